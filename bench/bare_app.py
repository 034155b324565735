"""The baseline: a bare Bolt app that only acks `/decision`, served exactly like `quorum serve`
(the same Starlette app factory, `dispatch_until_ack` on the listener threads, Bolt's
`process_before_response=True`, and the same uvicorn settings).

    python bench/bare_app.py --port 3001
"""

from __future__ import annotations

import argparse

import uvicorn
from slack_bolt import App
from slack_sdk import WebClient

from bot.config import load_settings
from bot.runtime import Runtime
from bot.web import HeaderDeadlineProtocol, create_web_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = load_settings()
    client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    app = App(client=client, signing_secret=settings.slack_signing_secret or "",
              token_verification_enabled=False, process_before_response=True)

    @app.command("/decision")
    def ack_only(ack) -> None:  # type: ignore[no-untyped-def]
        ack()

    web = create_web_app(Runtime.from_settings(settings), app, worker=None)
    uvicorn.run(web, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                http=HeaderDeadlineProtocol)


if __name__ == "__main__":
    main()
