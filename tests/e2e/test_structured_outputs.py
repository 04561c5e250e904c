"""Structured outputs through the official openai client: an answer to each JSON Schema of
structured/schemas.json (at least 55, at temperature 0 and 1) that the grammar finishes
("stop") parses and validates against its schema, formats included, and at least 95% of
them finish within 256 tokens; json_object, regex, choice and GBNF grammar constraints
hold on what comes back; openai's parse helper gets its Pydantic model; and a bad
constraint is a 400 naming its field, after which the server answers as before.

The tiny model writes poor prose, so what varies is whether an answer finishes, never
whether a finished one is valid."""
import datetime
import enum
import json
import pathlib
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, Optional

import httpx
import jsonschema
import openai
import pydantic
import pytest

from server_fixture import SluiceServer

MODEL = "sluice-tiny-code"
SCHEMAS = json.loads((pathlib.Path(__file__).parent / "structured" / "schemas.json").read_text())
# Keywords the grammar does not enforce (strict refuses them, else they are relaxed): a
# schema using them could be answered validly by the grammar and still fail validation.
RELAXED = {"uniqueItems", "multipleOf", "minProperties", "maxProperties", "patternProperties",
           "propertyNames", "contains", "not", "if", "then", "else", "dependentRequired",
           "dependentSchemas", "unevaluatedProperties", "unevaluatedItems"}


@pytest.fixture(scope="module")
def server(sluice_bin):
    s = SluiceServer(sluice_bin, "--slo-ttft-ms", "0").wait_ready()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)


# Draft 2020-12's own format checks (FormatChecker() would take draft 3's 'time'), plus
# date-time, time and hostname, whose checks need packages that are not installed.
FORMATS = jsonschema.FormatChecker(())
FORMATS.checkers.update(jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers)
TIME = r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)"


@FORMATS.checks("time")
def _time(value):
    return not isinstance(value, str) or re.fullmatch(TIME, value, re.ASCII) is not None


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value):
    if not isinstance(value, str):
        return True
    datetime.date.fromisoformat(value[:10])  # a real day: no February 30th
    return re.fullmatch(r"\d{4}-\d\d-\d\d[Tt]" + TIME, value, re.ASCII) is not None


@FORMATS.checks("hostname")
def _hostname(value):
    label = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    return not isinstance(value, str) or (
        len(value) <= 253 and re.fullmatch(rf"{label}(\.{label})*", value) is not None)


def errors_of(schema, value):
    validator = jsonschema.Draft202012Validator(schema, format_checker=FORMATS)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(value)]


def relaxed_keywords(schema, path="#"):
    """Where `schema` uses what the grammar would not enforce."""
    if not isinstance(schema, dict):
        return []
    found = [f"{path}/{k}" for k in schema if k in RELAXED]
    if ("pattern" in schema or "format" in schema) and (
            "minLength" in schema or "maxLength" in schema):
        found.append(f"{path}: a length bound beside a pattern or format")
    for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if k in schema and schema[k] != int(schema[k]):
            found.append(f"{path}/{k}: a non-integer bound")
    for k in ("properties", "$defs", "definitions"):
        for name, sub in schema.get(k, {}).items():
            found += relaxed_keywords(sub, f"{path}/{k}/{name}")
    for k in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for i, sub in enumerate(schema.get(k, [])):
            found += relaxed_keywords(sub, f"{path}/{k}/{i}")
    for k in ("items", "additionalProperties"):
        found += relaxed_keywords(schema.get(k), f"{path}/{k}")
    return found


def test_the_schema_suite_is_broad_and_enforceable():
    assert len(SCHEMAS) >= 55
    assert len({e["name"] for e in SCHEMAS}) == len(SCHEMAS)
    text = json.dumps(SCHEMAS)
    for kind in ('"$ref"', '"$defs"', '"definitions"', '"anyOf"', '"oneOf"', '"allOf"',
                 '"enum"', '"const"', '"pattern"', '"prefixItems"', '"minItems"', '"maxItems"',
                 '"exclusiveMinimum"', '["string", "null"]', '"additionalProperties"'):
        assert kind in text, kind
    for fmt in ("date", "time", "date-time", "uuid", "email", "ipv4", "hostname"):
        assert f'"format": "{fmt}"' in text, fmt
    for e in SCHEMAS:
        jsonschema.Draft202012Validator.check_schema(e["schema"])
        assert relaxed_keywords(e["schema"]) == [], e["name"]


def ask_schema(client, seed, entry, temperature):
    schema = entry["schema"]
    ask = (f"Give an example of {entry['name'].replace('_', ' ')} as JSON matching this "
           f"schema: {json.dumps(schema)}")
    r = client.chat.completions.create(
        model=MODEL, max_tokens=256, temperature=temperature, seed=seed,
        messages=[{"role": "system", "content": "Answer with JSON only."},
                  {"role": "user", "content": ask}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": entry["name"], "schema": schema,
                                         "strict": entry.get("strict", True)}})
    return r.choices[0].finish_reason, r.choices[0].message.content


def test_every_finished_answer_validates_and_95_percent_finish(client, capsys):
    runs = [(seed, entry, t) for t in (0, 1) for seed, entry in enumerate(SCHEMAS)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda run: ask_schema(client, *run), runs))
    counts = {0: Counter(), 1: Counter()}
    invalid = []
    for (seed, entry, t), (finish, text) in zip(runs, answers):
        counts[t][finish] += 1
        if finish != "stop":
            continue
        try:
            problems = errors_of(entry["schema"], json.loads(text))
        except json.JSONDecodeError as e:
            problems = [f"not JSON: {e}"]
        if problems:
            invalid.append((entry["name"], t, text, problems))
        else:
            counts[t]["valid"] += 1
    stopped = counts[0]["stop"] + counts[1]["stop"]
    with capsys.disabled():
        print("\nstructured outputs, %d schemas: " % len(SCHEMAS) + "; ".join(
            f"T={t}: {c['valid']} valid / {c['stop']} stopped / {c['length']} length"
            for t, c in counts.items()) + f"; stopped {stopped}/{len(runs)}"
            f" = {100 * stopped / len(runs):.1f}%")
    assert invalid == []
    assert set(counts[0]) | set(counts[1]) <= {"stop", "length", "valid"}, counts
    assert stopped >= 0.95 * len(runs), counts


JSON_PROMPTS = ["Describe a user as JSON.", "Return the config of a web server as a JSON object.",
                "Give the weather in Paris as JSON.", "List three fruits and their colors in JSON."]


def test_json_object_answers_are_objects(client):
    runs = [(p, t, seed) for p in JSON_PROMPTS for t in (0, 1) for seed in range(3)]

    def ask(run, extra):
        prompt, t, seed = run
        c = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=128,
            temperature=t, seed=seed, **extra).choices[0]
        return c.finish_reason, c.message.content

    with ThreadPoolExecutor(8) as pool:
        by_format = list(pool.map(lambda r: ask(r, {"response_format": {"type": "json_object"}}),
                                  runs))
        by_so = list(pool.map(lambda r: ask(r, {"extra_body": {"structured_outputs":
                                                                   {"json_object": True}}}), runs))
    assert by_format == by_so  # one grammar, one seed: the same answer either way
    finished = [text for finish, text in by_format if finish == "stop"]
    assert len(finished) >= len(runs) // 2, by_format
    assert all(finish in ("stop", "length") for finish, _ in by_format)
    for text in finished:
        assert isinstance(json.loads(text), dict), text
    assert any(json.loads(text) for text in finished)  # not only {}


@pytest.mark.parametrize("pattern, prompt", [
    (r"\(\d{3}\) \d{3}-\d{4}", "What is the office phone number?"),
    (r"\+1-\d{3}-\d{3}-\d{4}", "Call me at"),
    (r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])", "When was Python 3 released?"),
    (r"[a-z_][a-z0-9_]{0,15}", "Name a Python variable for a user count."),
    (r"[A-Z]{2}\d{4}", "Give a flight number."),
    (r"(yes|no)", "Is a list mutable?"),
    (r"#[0-9a-f]{6}", "A hex color for a button:"),
    (r"v\d\.\d{1,2}\.\d{1,2}(-rc\d)?", "Which version?"),
])
def test_regex_answers_match_in_full(client, pattern, prompt):
    for t in (0, 1):
        for seed in (1, 2):
            c = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=64,
                temperature=t, seed=seed,
                extra_body={"structured_outputs": {"regex": pattern}}).choices[0]
            assert c.finish_reason == "stop", c.message.content  # every match is short
            assert re.fullmatch(pattern, c.message.content), c.message.content


def test_choice_answers_are_one_of_the_choices(client):
    sets = [["positive", "negative", "neutral"],
            ["New York", "New Delhi", "Newcastle", "Paris"],  # shared prefixes
            ["def", "class", "lambda", "{\"json\": 1}", "a\nb"]]
    for choices in sets:
        for t in (0, 1):
            for seed in range(3):
                c = client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "Pick one."}],
                    max_tokens=16, temperature=t, seed=seed,
                    extra_body={"structured_outputs": {"choice": choices}}).choices[0]
                assert c.finish_reason == "stop"
                assert c.message.content in choices, c.message.content


SQL_GRAMMAR = r"""
# A SELECT over one of two tables, a few columns, and an optional equality filter.
root  ::= "SELECT " cols " FROM " table where?
cols  ::= col (", " col){0,3}
col   ::= "id" | "name" | "email" | "created_at"
table ::= "users" | 'orders'
where ::= " WHERE " col " = " [0-9]{1,4}
"""
COL = "(id|name|email|created_at)"
SQL_REGEX = rf"SELECT {COL}(, {COL}){{0,3}} FROM (users|orders)( WHERE {COL} = [0-9]{{1,4}})?"


def test_grammar_answers_match_the_equivalent_regex(client):
    texts = set()
    for prompt in ("Write a SQL query.", "Select the emails of all users."):
        for t in (0, 1):
            for seed in range(4):
                c = client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=64,
                    temperature=t, seed=seed,
                    extra_body={"structured_outputs": {"grammar": SQL_GRAMMAR}}).choices[0]
                assert c.finish_reason == "stop", c.message.content
                assert re.fullmatch(SQL_REGEX, c.message.content), c.message.content
                texts.add(c.message.content)
    assert len(texts) >= 3  # sampling moves within the grammar


class Unit(str, enum.Enum):
    celsius = "celsius"
    fahrenheit = "fahrenheit"


class WeatherQuery(pydantic.BaseModel):
    city: str = pydantic.Field(max_length=20, description="where")
    unit: Unit
    days: int = pydantic.Field(ge=1, le=7)


class Attendee(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=20)
    optional: bool


class Meeting(pydantic.BaseModel):
    title: str = pydantic.Field(max_length=30)
    kind: Literal["meeting", "call"]
    attendees: list[Attendee] = pydantic.Field(max_length=3)
    room: Optional[str] = pydantic.Field(max_length=10)


def test_the_parse_helper_returns_the_pydantic_model(server):
    sent = []
    http = httpx.Client(event_hooks={"request": [lambda r: sent.append(json.loads(r.read()))]})
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0,
                           http_client=http)
    for model in (WeatherQuery, Meeting):
        for t in (0, 1):
            r = client.chat.completions.parse(
                model=MODEL, messages=[{"role": "user", "content": "Fill it in."}],
                response_format=model, max_tokens=200, temperature=t, seed=3)
            c = r.choices[0]
            assert c.finish_reason == "stop", c.message.content
            assert isinstance(c.message.parsed, model), c.message.content
            assert c.message.parsed == model.model_validate_json(c.message.content)
    for body in sent:  # what the helper sends: strict, closed objects, annotations
        fmt = body["response_format"]["json_schema"]
        assert fmt["strict"] is True
        assert fmt["schema"]["additionalProperties"] is False and "title" in fmt["schema"]


def rf(schema, strict=False):
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": strict}}


SCHEMA_FIELD = "response_format.json_schema.schema"


@pytest.mark.parametrize("fields, param, says", [
    ({"response_format": rf({"type": "strin"})}, SCHEMA_FIELD, "strin"),
    ({"response_format": rf({"$ref": "#/$defs/missing"})}, SCHEMA_FIELD, "#/$defs/missing"),
    ({"response_format": rf({"type": "array", "uniqueItems": True}, strict=True)}, SCHEMA_FIELD,
     "uniqueItems"),
    ({"response_format": rf({"type": "integer", "multipleOf": 3}, strict=True)}, SCHEMA_FIELD,
     "multipleOf"),
    ({"response_format": rf({"type": "object", "minProperties": 1}, strict=True)}, SCHEMA_FIELD,
     "minProperties"),
    ({"response_format": rf({"not": {"type": "string"}}, strict=True)}, SCHEMA_FIELD, "not"),
    ({"response_format": {"type": "xml"}}, "response_format.type", "json_schema"),
    ({"structured_outputs": {"regex": "(a"}}, "structured_outputs.regex", ")"),
    ({"structured_outputs": {"grammar": 'root ::= "a" missing'}}, "structured_outputs.grammar",
     "missing"),
    ({"structured_outputs": {"grammar": 'start ::= "a"'}}, "structured_outputs.grammar", "root"),
    ({"structured_outputs": {"choice": []}}, "structured_outputs.choice", "non-empty"),
    ({"structured_outputs": {"regex": "a", "choice": ["a"]}}, "structured_outputs",
     "exactly one"),
    ({"response_format": rf({"type": "string"}), "structured_outputs": {"regex": "a"}},
     "structured_outputs", "both given"),
])
def test_a_bad_constraint_is_400_naming_its_field(client, fields, param, says):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}],
                                       max_tokens=4, extra_body=fields)
    assert e.value.body["param"] == param, e.value.body
    assert says in e.value.body["message"], e.value.body


def test_after_the_400s_the_server_answers_and_relaxes_without_strict(client, server):
    for _ in range(2):  # a refused compile is cached: it stays a 400
        r = httpx.post(server.url + "/v1/chat/completions", timeout=30, json={
            "model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 4,
            "response_format": rf({"type": "strin"})})
        assert r.status_code == 400 and r.json()["error"]["param"] == SCHEMA_FIELD, r.text
    c = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Pick one."}], max_tokens=8,
        extra_body={"structured_outputs": {"choice": ["up", "down"]}}).choices[0]
    assert c.message.content in ("up", "down") and c.finish_reason == "stop"
    # Without strict, what the grammar cannot enforce is relaxed, not refused.
    schema = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
              "maxItems": 3, "uniqueItems": True}
    c = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Three digits."}], max_tokens=32,
        temperature=0, response_format=rf(schema)).choices[0]
    assert c.finish_reason == "stop"
    value = json.loads(c.message.content)
    assert errors_of({**schema, "uniqueItems": False}, value) == [], c.message.content
    plain = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "def add(a, b):"}], max_tokens=8,
        temperature=0)
    assert plain.choices[0].message.content


# Cases that once went wrong, each a minimal reproduction: a grammar bug shows as an
# output that stopped but does not validate.

def complete(client, prompt, schema):
    return client.completions.create(model=MODEL, prompt=prompt, max_tokens=40, temperature=0,
                                     extra_body={"structured_outputs": {"json": schema}}).choices[0]


def test_an_extra_key_cannot_override_a_declared_one(client):
    schema = {"type": "object", "properties": {"id": {"type": "integer", "minimum": 0,
                                                      "maximum": 9}},
              "required": ["id"], "additionalProperties": {"type": "string", "maxLength": 3}}
    c = complete(client, 'a = {"id": 1, "id": "x"}\nb = {"id": 2, "id": "y"}\n'
                         'c = {"id": 3, "id": "z"}\nd = ', schema)
    # The prompt asks for a second "id"; the grammar never lets one be written, stopped
    # or cut (the model then wanders among other keys).
    assert len(re.findall(r'"id"\s*:', c.text)) == 1, c.text
    if c.finish_reason == "stop":
        assert errors_of(schema, json.loads(c.text)) == [], c.text


def test_format_date_is_a_real_day(client):
    schema = {"type": "string", "format": "date"}
    c = complete(client, 'a = "2023-02-30"\nb = "2021-02-31"\nc = "2022-02-30"\nd = '
                         '"2020-02-31"\ne = ', schema)
    assert c.finish_reason == "stop"
    assert errors_of(schema, json.loads(c.text)) == [], c.text


def test_a_pattern_anchored_at_its_end_only(client):
    schema = {"type": "string", "pattern": "[0-9]{3}$"}
    c = complete(client, 's = "ab123"\nt = "xy456"\nu = ', schema)  # accepted, not a 400
    assert c.text.startswith('"')
    if c.finish_reason == "stop":  # the unanchored start lets the model wander first
        assert re.search("[0-9]{3}$", json.loads(c.text)), c.text
