"""Where ``digit-reader`` reads its images: one-image requests at once, heavy ones in turns.

A request of more than ``LIGHT_IMAGES`` images is heavy (64 phone photos can take seconds of
CPU). Its images are read one at a time, in a pool of their own (``HEAVY_THREADS``, half the
cores), so that:

- one-image requests (the page, a camera) never queue behind them: they use the event loop's
  default executor, where at most one image per heavy request could ever have been waiting;
- heavy requests take turns image by image (the pool's queue holds at most one of each);
- a request that is cancelled (its REST client hung up, its gRPC call was cancelled) stops
  between two images instead of reading the rest for nobody.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent import futures

LIGHT_IMAGES = 1
HEAVY_THREADS = max(1, (os.cpu_count() or 2) // 2)

log = logging.getLogger("edgedigits.serving")


class ImageReaders:
    def __init__(self, heavy_threads: int = HEAVY_THREADS, name: str = "digit-reader") -> None:
        self.name = name
        self._heavy = futures.ThreadPoolExecutor(heavy_threads, thread_name_prefix="heavy-read")

    async def read_all(self, read: Callable[[bytes, int], object], images: list[bytes]) -> list:
        """``[read(image, index) ...]`` in worker threads, as the module says."""
        loop = asyncio.get_running_loop()
        if len(images) <= LIGHT_IMAGES:
            return [await loop.run_in_executor(None, read, image, index)
                    for index, image in enumerate(images)]
        done: list = []
        try:
            for index, image in enumerate(images):  # a cancelled request stops here
                done.append(await loop.run_in_executor(self._heavy, read, image, index))
        except asyncio.CancelledError:
            log.info("%s: the client went away: stopped after %d of %d images", self.name,
                     len(done), len(images))
            raise
        return done
