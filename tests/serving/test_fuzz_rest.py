"""Every REST request is answered with a status and, under /v1/, a JSON body; none drops.

Fixed cases first (version strings TF Serving cannot convert), then hypothesis:
random methods, paths (names, versions huge, Unicode or negative, labels, verbs)
and bodies (wrong shapes, dtypes and nesting, huge numbers, NaN, strings, deep
nesting, bytes that are no JSON) over one persistent HTTP/1.1 connection to a
real server on 127.0.0.1. VIDGEN_FUZZ_EXAMPLES sets the number of requests
(300 by default; `python -m bench.fuzz_rest` runs several thousand).
"""

import http.client
import json
import os
import urllib.parse

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import types_pb2

from export import contract as C
from serving import rest
from serving.core import Limits
from serving.errors import ServingError
from serving.tensors import InputSpec
from tests.serving.conftest import MODEL, copy_version, start_server

EXAMPLES = int(os.environ.get("VIDGEN_FUZZ_EXAMPLES", "300"))
INT64_MAX = (1 << 63) - 1


class Connection:
    """One keep-alive connection; reopened only when the server said it would close it."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.reopened = 0

    def send(self, method: str, path: str, body: bytes = b"") -> tuple[int, str, bytes]:
        self.conn.request(method, path, body=body,
                          headers={"Content-Type": "application/json"} if body else {})
        response = self.conn.getresponse()   # a dropped connection raises here
        data = response.read()
        if response.will_close:
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.reopened += 1
        return response.status, response.getheader("Content-Type", ""), data

    def close(self):
        self.conn.close()


@pytest.fixture(scope="module")
def fuzz_server(exported, tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz_rest") / MODEL
    os.makedirs(base)
    copy_version(exported, base, 1)
    server = start_server(base, limits=Limits(max_response_bytes=1 << 20))
    assert server.wait_for_model(60)
    yield server
    server.stop(grace=5)


@pytest.fixture
def connection(fuzz_server):
    c = Connection(fuzz_server.rest_api_port)
    yield c
    c.close()


def check_answer(method, path, status, content_type, data) -> dict:
    """The rules every answer follows; returns the JSON body ({} for non-API paths)."""
    assert 100 <= status < 600
    if not urllib.parse.urlsplit(path).path.lower().startswith("/v1/"):
        assert status == 404
        return {}
    assert content_type == "application/json", (method, path, status, data[:200])
    body = json.loads(data)
    assert isinstance(body, dict)
    if status != 200:
        assert set(body) == {"error"} and isinstance(body["error"], str), body
    # An unexpected exception is a 500 with a JSON body: still a bug the fuzzing reports.
    assert status != 500, (method, path[:200], body)
    return body


# ---- fixed cases --------------------------------------------------------------------------

HUGE = "9" * 5000
VERSION_CASES = {
    # absl::SimpleAtoi fails: TF Serving's message (http_rest_api_handler.cc).
    "thousands of digits": (f"/v1/models/vidgen/versions/{HUGE}", "GET", 400,
                            f"Failed to convert version: {HUGE} to numeric."),
    "above int64": (f"/v1/models/vidgen/versions/{INT64_MAX + 1}", "GET", 400,
                    f"Failed to convert version: {INT64_MAX + 1} to numeric."),
    "predict above int64": (f"/v1/models/vidgen/versions/{INT64_MAX + 1}:predict", "POST", 400,
                            f"Failed to convert version: {INT64_MAX + 1} to numeric."),
    "metadata of huge version": (f"/v1/models/vidgen/versions/{HUGE}/metadata", "GET", 400,
                                 f"Failed to convert version: {HUGE} to numeric."),
    "int64 max": (f"/v1/models/vidgen/versions/{INT64_MAX}", "GET", 404,
                  f"Could not find version {INT64_MAX} of model vidgen"),
    "leading zeros": ("/v1/models/vidgen/versions/0007", "GET", 404,
                      "Could not find version 7 of model vidgen"),
    # RE2's \d is ASCII: other digits make a path that does not match.
    "Arabic-Indic digit": ("/v1/models/vidgen/versions/%D9%A1", "GET", 400,
                           "Malformed request: GET /v1/models/vidgen/versions/%D9%A1"),
    "negative": ("/v1/models/vidgen/versions/-1:predict", "POST", 400,
                 "Malformed request: POST /v1/models/vidgen/versions/-1:predict"),
}


@pytest.mark.parametrize("case", list(VERSION_CASES))
def test_version_strings_answer_json(connection, case):
    path, method, status, message = VERSION_CASES[case]
    got = connection.send(method, path, b"{}" if method == "POST" else b"")
    assert check_answer(method, path, *got) == {"error": message}
    assert got[0] == status
    # The same connection still serves.
    assert connection.send("GET", "/v1/models/vidgen")[0] == 200
    assert connection.reopened == 0


def test_unicode_digits_never_name_a_version(fuzz_server):
    # Python's \d and int() take "١" as 1; TF Serving's RE2 does not.
    status, body = rest.handle(fuzz_server.core, "GET", "/v1/models/vidgen/versions/\u0661",
                               b"")
    assert (status, body) == (400, {"error": "Malformed request: GET "
                                             "/v1/models/vidgen/versions/\u0661"})


def test_unexpected_exception_is_a_json_500(fuzz_server, monkeypatch):
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(fuzz_server.core, "status", broken)
    status, body = rest.handle(fuzz_server.core, "GET", "/v1/models/vidgen", b"")
    assert (status, body) == (500, {"error": "Internal error while handling the request: "
                                             "RuntimeError."})


def test_instances_mixing_objects_and_values():
    # A signature of one input takes plain values or objects, not both.
    specs = {"x": InputSpec(types_pb2.DT_FLOAT, (-1,))}
    with pytest.raises(ServingError) as e:
        rest.parse_predict({"instances": [{"x": 1.0}, 3]}, specs, 100)
    assert e.value.message == ("Failed to process element: 1 of 'instances' list. JSON object "
                               "must only have keys: x")


def test_other_methods_answer_json(connection):
    # TF Serving's handler answers any method it does not serve as a malformed request.
    path = "/v1/models/vidgen"
    for method in ("PUT", "DELETE", "PATCH"):
        assert check_answer(method, path, *connection.send(method, path, b"{}")) == {
            "error": f"Malformed request: {method} {path}"}


# ---- fuzzing ------------------------------------------------------------------------------

def quoted(strategy):
    return strategy.map(lambda s: urllib.parse.quote(s, safe=""))


NAMES = st.one_of(st.sampled_from([MODEL, MODEL, MODEL, "nope", "VIDGEN", "%2F", "%00", "a%20b"]),
                  quoted(st.text(max_size=8)))
EDGE_VERSIONS = st.sampled_from([HUGE, "9" * 30, str(INT64_MAX), str(INT64_MAX + 1), "%D9%A1"])
VERSIONS = st.one_of(st.sampled_from(["1", "2", "0", "01", "-1", "+1", "1.0", ""]),
                     EDGE_VERSIONS, EDGE_VERSIONS,
                     st.integers(0, 10 ** 25).map(str),
                     quoted(st.text("0123456789\u0661\u0662", max_size=30)))
VERBS = st.sampled_from([":predict", ":predict", ":predict", ":classify", ":regress", ":nope",
                         "/metadata", "", "", "/metadata/x", ":PREDICT", "/"])


@st.composite
def paths(draw):
    kind = draw(st.integers(0, 9))
    if kind == 0:   # other paths, and /v1/ paths that are not the API
        return draw(st.one_of(
            st.sampled_from(["/", "/v1/", "/v1/models", "/v1/models/", "/v2/models/vidgen",
                             "/V1/MODELS/vidgen", "//v1", "/v1/models/vidgen/versions"]),
            quoted(st.text(max_size=30)).map(lambda s: "/v1/" + s)))
    path = "/v1/models/" + draw(NAMES)
    which = draw(st.integers(0, 3))
    if which == 1:
        path += "/versions/" + draw(VERSIONS)
    elif which == 2:
        path += "/labels/" + draw(st.one_of(st.sampled_from(["stable", "canary", ""]),
                                            quoted(st.text(max_size=6))))
    path += draw(VERBS)
    if draw(st.integers(0, 10)) == 0:
        path += "?" + draw(st.sampled_from(["a=1", "", "x=%ZZ"]))
    return path


NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(-(1 << 70), 1 << 70), st.sampled_from([0, 1, 255, 0.5, -1]))
LEAVES = st.one_of(NUMBERS, st.booleans(), st.none(), st.text(max_size=4))
JSON = st.recursive(LEAVES, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                   st.dictionaries(st.text(max_size=4), kids,
                                                                   max_size=3)), max_leaves=20)


@st.composite
def contexts(draw):
    """Near-valid context values: dense lists of a small shape, sometimes spoiled."""
    shape = (draw(st.integers(0, 2)), draw(st.integers(0, 3)),
             draw(st.sampled_from([16, 16, 8, 1])), draw(st.sampled_from([16, 16, 2])),
             draw(st.sampled_from([1, 1, 3])))
    shape = shape[:draw(st.sampled_from([5, 5, 5, 4, 3, 0]))]
    value = draw(st.sampled_from([0.5, 0, 1, 255, 300, -1, 1e300]))
    array = np.full(shape, value).tolist()
    spoil = draw(st.integers(0, 6))
    if spoil == 1 and isinstance(array, list) and array:
        array[0] = draw(JSON)                 # ragged or a wrong type
    elif spoil == 2:
        array = draw(JSON)
    elif spoil == 3 and isinstance(array, list):
        array.append(draw(NUMBERS))
    return array


@st.composite
def bodies(draw):
    kind = draw(st.integers(0, 12))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:   # nesting deeper than any parser's recursion
        depth = draw(st.sampled_from([100, 5000, 100_000]))
        inner = draw(st.sampled_from(["", "1", "NaN"]))
        return ('{"inputs": ' + "[" * depth + inner + "]" * depth + "}").encode()
    if kind == 2:   # numbers JSON can write but no dtype holds
        return draw(st.sampled_from([
            b'{"inputs": {"context": [[[[[1e999]]]]], "horizon": [1]}}',
            b'{"inputs": {"context": [[[[[NaN]]]]], "horizon": [Infinity]}}',
            b'{"inputs": {"context": 1, "horizon": [' + b"9" * 5000 + b"]}}",
            b'{"inputs": {"context": 1, "horizon": [' + b"9" * 400 + b"]}}",
            b'{"instances": [{"context": -0.0, "horizon": 1e308}]}']))
    if kind == 3:
        return json.dumps(draw(JSON)).encode()
    doc = {}
    if draw(st.booleans()):
        doc["signature_name"] = draw(st.one_of(st.sampled_from(
            ["", C.SERVING_DEFAULT, C.PREDICT_UINT8, C.STEP, "nope"]), JSON))
    horizon = draw(st.one_of(st.sampled_from([[1], [2], 1, [0], [1001], [1, 1], [2.5], ["1"]]),
                             JSON))
    if draw(st.booleans()):
        doc["inputs"] = {C.CONTEXT: draw(contexts()), C.HORIZON: horizon}
        if draw(st.integers(0, 5)) == 0:
            doc["inputs"][draw(st.text(max_size=4))] = draw(JSON)
        if draw(st.integers(0, 5)) == 0:
            doc["inputs"] = draw(JSON)
    else:
        n = draw(st.integers(0, 3))
        context = draw(contexts())
        doc["instances"] = [{C.CONTEXT: context, C.HORIZON: horizon if not isinstance(horizon, list)
                             else 1} for _ in range(n)]
        if draw(st.integers(0, 5)) == 0:
            doc["instances"] = draw(JSON)
    if draw(st.integers(0, 8)) == 0:
        doc[draw(st.sampled_from(["instances", "inputs", "examples"]))] = draw(JSON)
    return json.dumps(doc, allow_nan=True).encode()


METHODS = st.sampled_from(["GET", "GET", "POST", "POST", "POST", "PUT", "DELETE", "PATCH"])


@st.composite
def near_valid(draw):
    """A request the server answers 200, with at most one part replaced at random."""
    method, body = "POST", {"inputs": {C.CONTEXT: np.full((1, 2, 16, 16, 1), 0.5).tolist(),
                                       C.HORIZON: [draw(st.integers(1, 3))]}}
    path = "/v1/models/vidgen" + draw(st.sampled_from(["", "/versions/1", "/labels/stable"]))
    what = draw(st.sampled_from(["none", "none", "status", "method", "path", "body", "rows"]))
    if what == "status":
        return "GET", path + draw(st.sampled_from(["", "/metadata"])), b""
    if what == "method":
        method = draw(METHODS)
    if what == "path":
        path = draw(paths())
    if what == "rows":
        body = {"instances": [{C.CONTEXT: np.full((2, 16, 16, 1), 0.5).tolist(),
                               C.HORIZON: 1}] * draw(st.integers(1, 2))}
    data = draw(bodies()) if what == "body" else json.dumps(body).encode()
    return method, path + (":predict" if what != "path" else ""), data


def requests():
    random = st.tuples(METHODS, paths(), bodies())
    return st.one_of(near_valid(), random, random)


def test_fuzzed_rest_requests_always_answer_json(fuzz_server, connection):
    statuses = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(requests())
    def check(request):
        method, path, body = request
        got = connection.send(method, path, body if method == "POST" else b"")
        out = check_answer(method, path, *got)
        if got[0] == 200 and method == "POST":
            assert set(out) <= {"predictions", "outputs"}, out
        statuses[got[0]] = statuses.get(got[0], 0) + 1

    check()
    assert sum(statuses.values()) >= EXAMPLES
    # The fuzzing reached the model and every kind of refusal.
    assert {200, 400, 404}.issubset(statuses), statuses
    assert connection.send("GET", "/v1/models/vidgen")[0] == 200
    print("REST fuzz outcome by status:", dict(sorted(statuses.items())),
          "reconnections (the server closed):", connection.reopened)
