"""Batches that are answered once stored, and stored once: the same content sent again (a
retry after a lost answer) is recognized by its digest, whether the first copy is still being
stored (the retry waits for it) or was stored before (answered at once, not stored again)."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable


class OnceStored:
    """``submit(digest, start)``: ``start()`` hands the batch over and returns the future of
    its storage; it is not called for a digest in flight or already stored (``seen``)."""

    def __init__(self, seen: Callable[[str], bool],
                 on_duplicate: Callable[[], None] = lambda: None) -> None:
        self.seen, self.on_duplicate = seen, on_duplicate
        self._inflight: dict[str, cf.Future[None]] = {}
        self._lock = threading.Lock()

    def submit(self, digest: str, start: Callable[[], cf.Future[None]]) -> cf.Future[None]:
        with self._lock:
            earlier = self._inflight.get(digest)
            if earlier is None:
                mine: cf.Future[None] = cf.Future()
                self._inflight[digest] = mine
        if earlier is not None:
            self.on_duplicate()
            return earlier
        try:
            if self.seen(digest):
                self.on_duplicate()
                self._settle(digest, mine, None)
                return mine
            stored = start()
        except BaseException as e:
            self._settle(digest, mine, e)
            raise
        stored.add_done_callback(lambda f: self._settle(digest, mine, f.exception()))
        return mine

    def _settle(self, digest: str, fut: cf.Future[None], error: BaseException | None) -> None:
        with self._lock:
            self._inflight.pop(digest, None)
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)
