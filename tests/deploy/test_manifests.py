"""deploy/ checked offline: every overlay renders, validates against the Kubernetes
schemas of a pinned version and the custom resources' published schemas, passes checkov,
yamllint, hadolint and promtool, and keeps the pod contract (probes, drain, ports,
non-root, one GPU)."""
import json
import pathlib
import shutil
import subprocess
import tempfile

import jsonschema
import pytest
import yaml

from manifests import DEPLOY, OVERLAYS, ROOT, container, find, flag, one, port_number, render, tool

KUBERNETES_VERSION = "1.35.0"
SCHEMAS = ROOT / "third_party" / "crd-schemas"
CUSTOM = {  # apiVersion, kind -> schema file
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com/servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com/prometheusrule_v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh/scaledobject_v1alpha1.json",
    ("inference.networking.k8s.io/v1", "InferencePool"):
        "inference.networking.k8s.io/inferencepool_v1.json",
}


def test_every_overlay_is_checked():
    assert set(OVERLAYS) >= {"cpu", "gpu", "gpu-hpa"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_kinds_validate_against_kubernetes_schemas(overlay, tmp_path):
    text, objects = render(overlay)
    core = [o for o in objects if (o["apiVersion"], o["kind"]) not in CUSTOM]
    assert core
    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump_all(core))
    r = subprocess.run([tool("kubernetes-validate"), "-k", KUBERNETES_VERSION, "--strict",
                        "--quiet", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def unknown_fields(obj, schema, where=""):
    """Fields the schema does not know: the API server would prune them silently."""
    found = []
    if isinstance(obj, dict) and schema.get("type") == "object":
        if schema.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in schema:
            return found
        props = schema.get("properties", {})
        for key, value in obj.items():
            if where == "" and key in ("apiVersion", "kind", "metadata"):
                continue
            if key not in props:
                found.append(f"{where}.{key}")
            else:
                found += unknown_fields(value, props[key], f"{where}.{key}")
    elif isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            found += unknown_fields(item, schema["items"], f"{where}[{i}]")
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_validate_against_published_schemas(overlay):
    _, objects = render(overlay)
    custom = [o for o in objects if (o["apiVersion"], o["kind"]) in CUSTOM]
    kinds = {o["kind"] for o in custom}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    assert ("ScaledObject" in kinds) != ("HorizontalPodAutoscaler" in {o["kind"] for o in objects})
    for o in custom:
        schema = json.loads((SCHEMAS / CUSTOM[(o["apiVersion"], o["kind"])]).read_text())
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(o), key=str)
        assert not errors, f"{o['kind']}/{o['metadata']['name']}: {errors[0].message}"
        assert not unknown_fields(o, schema), (o["kind"], unknown_fields(o, schema))


def test_unknown_field_check_catches_a_typo():
    schema = json.loads((SCHEMAS / CUSTOM[("keda.sh/v1alpha1", "ScaledObject")]).read_text())
    _, objects = render("cpu")
    so = json.loads(json.dumps(one(objects, "ScaledObject", "sluice")))
    assert not unknown_fields(so, schema)
    so["spec"]["minReplicas"] = 1  # HPA's name, not KEDA's minReplicaCount
    assert unknown_fields(so, schema) == [".spec.minReplicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_reports_no_unexplained_failure(overlay, tmp_path):
    text, _ = render(overlay)
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(text)
    r = subprocess.run([tool("checkov"), "-f", str(path), "--framework", "kubernetes",
                        "--compact", "-o", "json"], capture_output=True, text=True)
    report = json.loads(r.stdout)
    report = report if isinstance(report, dict) else report[0]
    assert report["summary"]["parsing_errors"] == 0
    results = report["results"]
    failed = [f"{c['check_id']} {c['resource']}" for c in results["failed_checks"]]
    assert not failed, failed
    # Each skip carries its reason (checkov.io/skipN: ID=reason, beside the resource).
    for c in results["skipped_checks"]:
        assert c["check_result"].get("suppress_comment"), c["check_id"]
    assert results["passed_checks"]


def test_yamllint_is_clean():
    r = subprocess.run([tool("yamllint"), "-s", "-c", str(ROOT / ".yamllint.yaml"), str(DEPLOY)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_is_clean():
    dockerfiles = sorted((DEPLOY / "docker").glob("Dockerfile.*"))
    assert [d.name for d in dockerfiles] == ["Dockerfile.cpu", "Dockerfile.cuda"]
    r = subprocess.run([tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"),
                        *map(str, dockerfiles)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_prometheus_rules_check_and_unit_tests_pass(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) missing: run scripts/install_deps.sh"
    _, objects = render("cpu")
    rule = one(objects, "PrometheusRule", "sluice")
    (tmp_path / "sluice-rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    shutil.copy(DEPLOY / "base" / "monitoring" / "rules.test.yaml", tmp_path)
    for args in (["check", "rules", "sluice-rules.yaml"], ["test", "rules", "rules.test.yaml"]):
        r = subprocess.run([promtool, *args], cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def promql_of_deploy():
    """Every PromQL expression deploy/ holds outside the rules: autoscaler queries and the
    dashboard's targets (with its variables filled in)."""
    exprs = {}
    _, objects = render("cpu")
    for t in one(objects, "ScaledObject", "sluice")["spec"]["triggers"]:
        exprs[f"keda {t['name']}"] = t["metadata"]["query"]
    dash = json.loads((DEPLOY / "base/monitoring/grafana-dashboard.json").read_text())
    panels = [p for row in dash["panels"] for p in [row, *row.get("panels", [])]]
    for p in panels:
        for t in p.get("targets", []):
            expr = t["expr"].replace("$namespace", "sluice").replace("$pod", ".*")
            exprs[f"dashboard {p['title']} {t.get('refId')}"] = expr.replace("$__rate_interval",
                                                                             "1m")
    adapter = yaml.safe_load((DEPLOY / "components/hpa/prometheus-adapter-values.yaml").read_text())
    for kind in ("custom", "external"):
        for i, rule in enumerate(adapter["rules"][kind]):
            q = (rule["metricsQuery"].replace("<<.Series>>", "sluice_requests_arrived_total")
                 .replace("<<.LabelMatchers>>", 'namespace="sluice"')
                 .replace("<<.GroupBy>>", "namespace, pod"))
            exprs[f"prometheus-adapter {kind} {i}"] = q
    return exprs


def test_autoscaler_and_dashboard_queries_parse(tmp_path):
    exprs = promql_of_deploy()
    assert len(exprs) > 20
    rules = {"groups": [{"name": "parse", "rules": [
        {"record": f"check:expr_{i}", "expr": e} for i, e in enumerate(exprs.values())]}]}
    (tmp_path / "exprs.yaml").write_text(yaml.safe_dump(rules))
    r = subprocess.run([shutil.which("promtool"), "check", "rules", "--lint=none", "exprs.yaml"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# --- the pod contract, on the rendered Deployment ------------------------------------------


def deployment(overlay):
    _, objects = render(overlay)
    return objects, one(objects, "Deployment", "sluice")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_covers_prestop_and_drain(overlay):
    _, d = deployment(overlay)
    spec = d["spec"]["template"]["spec"]
    engine = container(spec, "engine")
    pre_stop = engine["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(flag(engine["args"], "drain-timeout-s"))
    assert pre_stop >= 5, "endpoints need a few seconds to drop the pod before SIGTERM"
    assert spec["terminationGracePeriodSeconds"] > pre_stop + drain, (
        spec["terminationGracePeriodSeconds"], pre_stop, drain)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_point_at_ports_the_binaries_listen_on(overlay):
    _, d = deployment(overlay)
    spec = d["spec"]["template"]["spec"]
    engine, gateway = container(spec, "engine"), container(spec, "gateway")
    metrics_port = int(flag(engine["args"], "metrics-port"))
    assert flag(engine["args"], "metrics-host") == "0.0.0.0"
    for kind, path in (("startupProbe", "/ready"), ("readinessProbe", "/ready"),
                       ("livenessProbe", "/health")):
        probe = engine[kind]["httpGet"]
        assert probe["path"] == path, (kind, probe)
        assert port_number(engine, probe["port"]) == metrics_port, (kind, probe)
    admin_port = int(flag(gateway["args"], "admin-listen").rsplit(":", 1)[1])
    assert port_number(gateway, gateway["readinessProbe"]["httpGet"]["port"]) == admin_port
    assert port_number(gateway, gateway["livenessProbe"]["httpGet"]["port"]) == admin_port
    # The startup probe gives the model its load time; liveness never cuts a load short.
    startup = engine["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_is_a_native_sidecar_in_front_of_a_loopback_engine(overlay):
    _, d = deployment(overlay)
    spec = d["spec"]["template"]["spec"]
    gateway = container(spec, "gateway")
    assert gateway in spec["initContainers"] and gateway["restartPolicy"] == "Always"
    engine = container(spec, "engine")
    assert flag(engine["args"], "host") == "127.0.0.1"
    assert flag(engine["args"], "grpc-host") == "127.0.0.1"
    upstream = flag(gateway["args"], "upstream")
    assert upstream == f"http://127.0.0.1:{flag(engine['args'], 'port')}"
    keys = flag(gateway["args"], "keys")
    mount = next(m for m in gateway["volumeMounts"] if keys.startswith(m["mountPath"] + "/"))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert "secret" in volume, "gateway keys must come from a Secret"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_salt_secret_comes_read_only_from_its_own_secret(overlay):
    """The cache-salt secret is a file in a read-only volume from a Secret of its own: the
    same secret in every replica and across restarts (the gateway would otherwise make one
    up per pod), never written by the gateway (a read-only mount: a missing file stops it
    at start), and apart from the keys (rotating keys must not move every salt)."""
    _, d = deployment(overlay)
    spec = d["spec"]["template"]["spec"]
    gateway = container(spec, "gateway")
    salt = flag(gateway["args"], "salt-secret-file")
    assert salt, "the gateway needs --salt-secret-file (else salts change on every restart)"
    mounts = [m for m in gateway["volumeMounts"] if salt.startswith(m["mountPath"] + "/")]
    assert len(mounts) == 1, mounts
    mount = mounts[0]
    assert mount.get("readOnly") is True, mount
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert set(volume) == {"name", "secret"}, "the salt secret must come from a Secret"
    secret = volume["secret"]
    keys_mount = next(m for m in gateway["volumeMounts"]
                      if flag(gateway["args"], "keys").startswith(m["mountPath"] + "/"))
    keys_volume = next(v for v in spec["volumes"] if v["name"] == keys_mount["name"])
    assert secret["secretName"] != keys_volume["secret"]["secretName"]
    assert not secret.get("optional"), "a missing Secret must keep the pod from starting"
    # The file the flag names is one the volume projects.
    rel = salt[len(mount["mountPath"]) + 1:]
    if "items" in secret:
        assert rel in [i["path"] for i in secret["items"]], (rel, secret["items"])
    # Readable by the owner (and, through the pod's fsGroup, the gateway's group) only.
    assert secret.get("defaultMode", 0o644) & 0o037 == 0, oct(secret.get("defaultMode", 0o644))
    for i in secret.get("items", []):
        assert i.get("mode", secret.get("defaultMode", 0o644)) & 0o037 == 0, i
    # No other container sees it.
    for c in spec["containers"] + spec["initContainers"]:
        if c is not gateway:
            assert mount["name"] not in [m["name"] for m in c.get("volumeMounts", [])], c["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_is_the_only_port_in_the_service(overlay):
    objects, d = deployment(overlay)
    spec = d["spec"]["template"]["spec"]
    gateway = container(spec, "gateway")
    api_port = int(flag(gateway["args"], "listen").rsplit(":", 1)[1])
    public = [s for s in find(objects, "Service") if s["spec"].get("clusterIP") != "None"
              and s["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]]
    assert [s["metadata"]["name"] for s in public] == ["sluice"]
    ports = public[0]["spec"]["ports"]
    assert len(ports) == 1 and port_number(gateway, ports[0]["targetPort"]) == api_port
    # The headless metrics Service carries metrics ports only, no API port.
    engine = container(spec, "engine")
    api_ports = {int(flag(engine["args"], "port")), int(flag(engine["args"], "grpc-port")), api_port}
    for s in find(objects, "Service"):
        if s["spec"].get("clusterIP") == "None":
            for p in s["spec"]["ports"]:
                c = engine if p["targetPort"] in [q["name"] for q in engine["ports"]] else gateway
                assert port_number(c, p["targetPort"]) not in api_ports, p


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_the_engine_api_from_nowhere(overlay):
    objects, d = deployment(overlay)
    spec = d["spec"]["template"]["spec"]
    engine = container(spec, "engine")
    policy = one(objects, "NetworkPolicy", "sluice")
    assert policy["spec"]["podSelector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"]
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    engine_api = {"http", "grpc", 8000, 50051}
    for rule in policy["spec"]["ingress"]:
        for p in rule["ports"]:
            assert p["port"] not in engine_api, p
            if p["port"] in ("metrics", "gateway-admin"):
                assert rule.get("from"), "metrics ports must name who may scrape them"
    assert policy["spec"].get("egress") == []
    assert engine["ports"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_non_root_read_only_without_capabilities(overlay):
    _, d = deployment(overlay)
    spec = d["spec"]["template"]["spec"]
    pod_sc = spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] != 0
    assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    for c in spec["containers"] + spec["initContainers"]:
        sc = c["securityContext"]
        assert sc.get("runAsNonRoot", pod_sc["runAsNonRoot"]) is True
        assert sc.get("runAsUser", pod_sc["runAsUser"]) != 0
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
    assert spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gpu_overlays_request_exactly_one_gpu_per_engine(overlay):
    _, d = deployment(overlay)
    spec = d["spec"]["template"]["spec"]
    engine = container(spec, "engine")
    gpus = {c["name"]: c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
            for c in spec["containers"] + spec["initContainers"]}
    if overlay.startswith("gpu"):
        assert gpus == {"engine": 1, "gateway": None}
        assert engine["resources"]["requests"]["nvidia.com/gpu"] == 1
        assert flag(engine["args"], "device") == "cuda"
        shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"]["medium"] == "Memory"
        assert any(m["mountPath"] == "/dev/shm" for m in engine["volumeMounts"])
        assert any(m["mountPath"] == flag(engine["args"], "model") for m in engine["volumeMounts"])
    else:
        assert set(gpus.values()) == {None}
        assert flag(engine["args"], "device") in (None, "cpu")


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o.startswith("gpu")])
def test_gpu_count_and_flag_follow_the_tensor_parallel_size(overlay, tmp_path):
    """One value in the overlay sets the engine's --tensor-parallel-size (through the
    environment the flag reads) and its GPU request and limit."""
    _, d = deployment(overlay)
    engine = container(d["spec"]["template"]["spec"], "engine")
    env = {e["name"]: e["value"] for e in engine["env"]}
    assert env["SLUICE_TENSOR_PARALLEL_SIZE"] == "1"
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    kustomization = copy / "overlays" / overlay / "kustomization.yaml"
    text = kustomization.read_text()
    assert text.count('value: "1"') == 1
    kustomization.write_text(text.replace('value: "1"', 'value: "4"'))
    out = subprocess.run([tool("kubectl"), "kustomize", str(copy / "overlays" / overlay)],
                         check=True, capture_output=True, text=True).stdout
    objects = [o for o in yaml.safe_load_all(out) if o]
    assert not find(objects, "ConfigMap", "sluice-parallelism")  # kustomize's own, not applied
    engine = container(one(objects, "Deployment", "sluice")["spec"]["template"]["spec"], "engine")
    assert {e["name"]: e["value"] for e in engine["env"]}["SLUICE_TENSOR_PARALLEL_SIZE"] == "4"
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert engine["resources"]["requests"]["nvidia.com/gpu"] == 4


def test_inference_pool_targets_the_gateway_and_maps_sluice_metrics():
    objects, d = deployment("gpu")
    spec = d["spec"]["template"]["spec"]
    gateway, engine = container(spec, "gateway"), container(spec, "engine")
    pool = one(objects, "InferencePool", "sluice")
    assert pool["spec"]["selector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"]
    api_port = int(flag(gateway["args"], "listen").rsplit(":", 1)[1])
    assert [p["number"] for p in pool["spec"]["targetPorts"]] == [api_port]
    epp = one(objects, "Deployment", pool["spec"]["endpointPickerRef"]["name"])
    epp_args = container(epp["spec"]["template"]["spec"], "epp")["args"]
    assert flag(epp_args, "model-server-metrics-port") == flag(engine["args"], "metrics-port")
    assert flag(epp_args, "pool-name") == pool["metadata"]["name"]
    config = yaml.safe_load(one(objects, "ConfigMap", "sluice-epp-config")["data"]["sluice-epp.yaml"])
    assert config["kind"] == "EndpointPickerConfig"
    names = {p["type"] for p in config["plugins"]}
    refs = {r["pluginRef"] for prof in config["schedulingProfiles"] for r in prof["plugins"]}
    refs |= {s["pluginRef"] for s in config["dataLayer"]["sources"]}
    refs |= {e["pluginRef"] for s in config["dataLayer"]["sources"] for e in s["extractors"]}
    assert refs <= names, refs - names
    extractor = next(p for p in config["plugins"] if p["type"] == "core-metrics-extractor")
    engine_type = d["spec"]["template"]["metadata"]["labels"][
        extractor["parameters"]["engineLabelKey"]]
    cfg = next(e for e in extractor["parameters"]["engineConfigs"] if e["name"] == engine_type)
    assert cfg["queuedRequestsSpec"] == "sluice_num_requests_waiting"
    assert cfg["runningRequestsSpec"] == "sluice_num_requests_running"
    assert cfg["kvUsageSpec"] == "sluice_kv_cache_usage_ratio"


def test_autoscalers_scale_on_arrivals_not_on_goodput_alone():
    _, objects = render("gpu")
    triggers = one(objects, "ScaledObject", "sluice")["spec"]["triggers"]
    main = triggers[0]["metadata"]
    assert "sluice_requests_arrived_total" in main["query"]
    assert "slo_met" not in main["query"]
    assert float(main["threshold"]) > 0
    assert any("sluice_requests_slo_met_total" in t["metadata"]["query"] for t in triggers[1:])
    _, objects = render("gpu-hpa")
    hpa = one(objects, "HorizontalPodAutoscaler", "sluice")
    names = [m.get("pods", m.get("external", {}))["metric"]["name"] for m in hpa["spec"]["metrics"]]
    assert names == ["sluice_request_arrival_rate", "sluice_slo_guardrail_replicas"]
    # Same per-replica goodput threshold in both autoscalers.
    assert float(hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"]) == float(
        main["threshold"])
