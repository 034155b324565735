"""`python -m bot.healthcheck`: exit 0 when this container's Quorum answers `GET /healthz` with
200, 1 otherwise (the image's HEALTHCHECK and Compose's, for `quorum serve` and `quorum socket`
alike: both serve it on PORT). Standard library only, so that it starts in a few milliseconds."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('PORT', '3000')}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (OSError, urllib.error.URLError) as exc:
        print(f"quorum healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
