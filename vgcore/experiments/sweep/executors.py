"""The executors that run a sweep's configurations: ``serial`` (this process), ``processes``
(a pool of spawned local processes, a worker that dies recorded as a failed run) and ``dask``
(a ``dask.distributed`` cluster: a client, a scheduler address, or a local cluster started and
stopped here).  Each calls ``handle(result)`` in this process as results come back."""
from __future__ import annotations

import os
import uuid

from vgcore.core import _ui
from vgcore.experiments.sweep.config import run_id
from vgcore.experiments.sweep.runner import _execute, _failed, _set_threads

__all__ = ["EXECUTORS"]

EXECUTORS = ("serial", "processes", "dask")


def _default_workers():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _init_worker(threads):
    _set_threads(threads)


def _run_serial(todo, threads, handle):
    with _ui.limited_threads(threads):
        for cfg in todo:
            handle(_execute(cfg, threads))


_DIED = ("a worker process died while this run was in flight (out of memory, or a crash in "
         "this run or in another run in flight beside it): run the sweep again with "
         "retry_failed=True (vgcore sweep --retry-failed)")


def _run_processes(todo, threads, workers, handle, target=None):
    import concurrent.futures as cf
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: the parent's OpenMP and BLAS thread pools do not survive a fork
    ctx = multiprocessing.get_context("spawn")
    queue = list(reversed(todo))
    while queue:
        pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                      initializer=_init_worker, initargs=(threads,))
        inflight = {}
        finished = 0                      # runs that came back from this pool
        lost = []                         # runs in flight when it broke
        try:
            while (queue or inflight) and not lost:
                while queue and len(inflight) < 2 * workers:
                    cfg = queue.pop()
                    inflight[pool.submit(target or _execute, cfg, threads)] = cfg
                done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    cfg = inflight.pop(fut)
                    try:
                        res = fut.result()
                    except BrokenProcessPool:
                        lost.append(cfg)
                        continue
                    except Exception as e:      # noqa: BLE001 -- e.g. a result not picklable
                        res = _failed(cfg, f"{type(e).__name__}: {e}", threads)
                    finished += 1
                    handle(res)
            if lost:
                lost += list(inflight.values())
                inflight.clear()
                if finished == 0:
                    raise RuntimeError(
                        "executor 'processes': the worker processes died before finishing "
                        "any run (their messages are above). From a script, the sweep must "
                        "run under `if __name__ == \"__main__\":` (each worker process imports "
                        "the script); otherwise run the sweep with executor='serial' to see "
                        "the error")
                for cfg in lost:
                    handle(_failed(cfg, _DIED, threads))
        except BaseException:             # interrupted or failed: stop the workers, now
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                p.terminate()
            for p in procs:
                p.join(5)
            raise
        pool.shutdown(wait=True)


def _run_dask(todo, threads, workers, handle, client, scheduler, timeout):
    try:
        import distributed
    except ImportError:
        raise ImportError("executor 'dask' needs dask.distributed: pip install "
                          "\"vgcore[dask]\" (or pip install \"dask[distributed]\")") from None
    own_client = own_cluster = None
    if client is None:
        if scheduler is not None:
            try:
                client = own_client = distributed.Client(scheduler, timeout=f"{timeout}s")
            except (OSError, TimeoutError) as e:
                raise ConnectionError(f"scheduler: cannot reach the Dask scheduler at "
                                      f"{scheduler} ({type(e).__name__}: {e})") from None
        else:
            own_cluster = distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None)
            client = own_client = distributed.Client(own_cluster)
    token = uuid.uuid4().hex[:8]
    futures = {}
    try:
        for cfg in todo:
            fut = client.submit(_execute, cfg, threads, key=f"vgcore-run-{run_id(cfg)}-{token}",
                                pure=False)
            futures[fut.key] = (fut, cfg)
        for fut in distributed.as_completed([f for f, _ in futures.values()]):
            cfg = futures.pop(fut.key)[1]
            try:
                res = fut.result()
            except Exception as e:          # noqa: BLE001 -- KilledWorker, cancelled, ...
                res = _failed(cfg, f"dask: {type(e).__name__}: {' '.join(str(e).split())}",
                              threads)
            fut.release()
            handle(res)
    finally:
        if futures:
            try:
                client.cancel([f for f, _ in futures.values()])
            except Exception:               # noqa: BLE001 -- best effort while stopping
                pass
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()


def _workers_of(client):
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:                        # noqa: BLE001
        return 0
