"""Find a data file in the data dir or the download cache, else download it from its canonical source."""

import os
import shutil
import urllib.request
from pathlib import Path

from erbench.errors import ErbenchError
from erbench.progress import say


def find_or_download(candidates: list[Path], url: str, download: Path, what: str, fix: str) -> Path:
    """The first existing candidate, else `download` (fetched from `url` once; refused when offline)."""
    for path in candidates + [download]:
        if path.exists():
            return path
    where = ", ".join(str(c) for c in candidates) or "no data dir given"
    if os.environ.get("ERBENCH_OFFLINE") or os.environ.get("HF_HUB_OFFLINE"):
        raise ErbenchError(f"{what} not found ({where}) and downloads are off (ERBENCH_OFFLINE)", fix)
    try:
        say(f"downloading {what} from {url}")
        download.parent.mkdir(parents=True, exist_ok=True)
        tmp = download.with_name(download.name + ".part")
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
            shutil.copyfileobj(response, f)
        tmp.rename(download)
        return download
    except OSError as e:
        raise ErbenchError(f"{what} not found ({where}) and the download failed ({e})", fix) from None
