"""An HTTP API's routes as the template declares them, and a received request as the payload
2.0 event API Gateway hands a Lambda integration (and its answer back into an HTTP response).

Hand-written with `http_api.py` (see there why): the event's shape is API Gateway's documented
one (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html).
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from jobkit_tools.local.stack_template import deployed_template

ACCOUNT_ID = "123456789012"  # moto's default account: the local stack's ARNs use it
IMPLICIT_API = "ServerlessHttpApi"  # SAM's name for the API of HttpApi events without ApiId


@dataclass(frozen=True)
class Route:
    """One route of an HTTP API: `POST /jobs/{id}` -> a function, with or without IAM auth."""

    api: str  # the AWS::Serverless::HttpApi's logical id
    method: str  # upper case, or ANY
    path: str  # "/jobs/{id}", "/{proxy+}"
    function: str  # the function's logical id
    iam: bool

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Its path parameters if it takes this request, else None."""
        if self.method not in ("ANY", method):
            return None
        pattern = "".join(
            f"(?P<{part[1:-2]}>.+)"
            if part.endswith("+}")
            else f"(?P<{part[1:-1]}>[^/]+)"
            if part.startswith("{")
            else re.escape(part)
            for part in re.split(r"(\{[^}]+\})", self.path)
            if part
        )
        found = re.fullmatch(pattern, path)
        return found.groupdict() if found else None


def http_api_routes(template_path: Path) -> list[Route]:
    """Every HttpApi event of the template's functions, as routes of their API (IAM-authorized
    where the API's DefaultAuthorizer or the event's Auth says AWS_IAM)."""
    resources = deployed_template(template_path)["Resources"]
    routes = []
    for function_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties") or {}
            api = props.get("ApiId", {}).get("Ref", IMPLICIT_API)
            default = resources.get(api, {}).get("Properties", {}).get("Auth", {})
            authorizer = props.get("Auth", {}).get("Authorizer", default.get("DefaultAuthorizer"))
            routes.append(
                Route(
                    api=api,
                    method=_method(str(props.get("Method", "ANY"))),
                    path=str(props.get("Path", "/{proxy+}")),
                    function=function_id,
                    iam=authorizer == "AWS_IAM",
                )
            )
    # As API Gateway chooses: the most specific route first (fewer variables, no greedy one)
    return sorted(routes, key=lambda r: ("+}" in r.path, r.path.count("{"), -len(r.path)))


def _method(method: str) -> str:
    upper = method.upper()
    return "ANY" if upper in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else upper


@dataclass(frozen=True)
class Request:
    """What the server received."""

    method: str
    raw_path: str
    raw_query: str
    headers: list[tuple[str, str]]  # as received, in order
    body: bytes
    source_ip: str
    host: str


def _body(body: bytes) -> tuple[str | None, bool]:
    """(the body as the event carries it, whether base64): text if it is UTF-8."""
    if not body:
        return None, False
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), True


def payload_event(
    request: Request, route: Route, parameters: dict[str, str], access_key: str | None
) -> dict[str, Any]:
    """The payload format 2.0 event of `request` on `route` (`access_key`: the IAM caller)."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        if name.lower() == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
        else:
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(request.raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    body, encoded = _body(request.body)
    now = time.time()
    context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": route.api.lower(),
        "domainName": request.host,
        "domainPrefix": request.host.split(".")[0],
        "http": {
            "method": request.method,
            "path": request.raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route.key,
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if access_key is not None:
        context["authorizer"] = {"iam": _caller(access_key)}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": encoded,
    }
    optional = {
        "cookies": cookies,
        "queryStringParameters": query,
        "pathParameters": parameters,
        "body": body,
    }
    event.update({key: value for key, value in optional.items() if value})
    return event


def _caller(access_key: str) -> dict[str, Any]:
    return {
        "accessKey": access_key,
        "accountId": ACCOUNT_ID,
        "callerId": "AIDALOCALSTACKCALLER",
        "cognitoIdentity": None,
        "principalOrgId": None,
        "userArn": f"arn:aws:iam::{ACCOUNT_ID}:user/local",
        "userId": "AIDALOCALSTACKCALLER",
    }


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def answer_of(result: Any) -> Answer:
    """An integration's result as API Gateway turns it into a response (payload 2.0): a
    `statusCode` object as it says, anything else as a 200 JSON body."""
    if not (isinstance(result, dict) and "statusCode" in result):
        text = json.dumps(result).encode()
        return Answer(200, [("Content-Type", "application/json")], text)
    headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers += [(str(name), str(v)) for v in values]
    headers += [("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or []]
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
    return Answer(int(result["statusCode"]), headers, body)


def message(status: int, text: str) -> Answer:
    """API Gateway's own answers: `{"message": ...}`."""
    body = json.dumps({"message": text}).encode()
    return Answer(status, [("Content-Type", "application/json")], body)
