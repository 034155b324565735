"""The headers MLflow sends with a webhook delivery signed by its secret: `v1,` + base64 of
HMAC-SHA256 over "<delivery id>.<timestamp>.<body>" (see `../shared/integrations.md`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid


def mlflow_signed(body: bytes, secret: str, *, delivery: str | None = None,
                  timestamp: int | None = None) -> dict[str, str]:
    delivery = delivery or str(uuid.uuid4())
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"{delivery}.{stamp}.".encode() + body,
                      hashlib.sha256).digest()
    return {"Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery,
            "X-MLflow-Timestamp": stamp,
            "X-MLflow-Signature": "v1," + base64.b64encode(digest).decode()}
