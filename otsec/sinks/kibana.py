"""Import otsec's saved objects (data views, dashboard, network graph) into Kibana."""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.request
import uuid
from importlib import resources
from pathlib import Path

from otsec.sinks.search import SearchError, _secret


def saved_objects() -> Path:
    """The saved objects shipped inside the package (``kibana/`` in a checkout links there)."""
    return Path(str(resources.files("otsec") / "kibana" / "otsec.ndjson"))


def import_objects(kibana_url: str, path: Path | None = None) -> dict:
    """POST the ndjson to the saved-objects import API (overwriting older versions)."""
    data = (path or saved_objects()).read_bytes()
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"otsec.ndjson\"\r\nContent-Type: application/ndjson\r\n\r\n").encode() \
        + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{kibana_url.rstrip('/')}/api/saved_objects/_import?overwrite=true", data=body,
        method="POST", headers={"kbn-xsrf": "otsec",
                                "Content-Type": f"multipart/form-data; boundary={boundary}"})
    api_key = _secret("OTSEC_KIBANA_API_KEY") or _secret("OTSEC_ES_API_KEY")
    user, password = os.environ.get("OTSEC_ES_USERNAME"), _secret("OTSEC_ES_PASSWORD")
    if api_key:
        request.add_header("Authorization", f"ApiKey {api_key}")
    elif user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=os.environ.get("OTSEC_ES_CA_FILE"))
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:
            result = json.load(response)
    except OSError as exc:
        raise SearchError(f"{kibana_url}: saved objects import failed ({exc})") from None
    if not result.get("success", False):
        raise SearchError(f"{kibana_url}: Kibana refused some objects: {result.get('errors')}")
    return result
