"""Whole collections: find the audio in a folder or glob, mirror it under an output folder, skip complete
outputs, shard the files across torchrun ranks by size, restore file by file, and summarise.

Complete outputs. An output counts as complete when it exists (outputs are written atomically, so an
existing one is whole) and its record ``OUT/.cqtrestore/<relative output>.json`` holds this run's settings
and the input's size and modification time. An output that exists without a matching record (other
settings, an edited input, or a file this tool did not write) is never kept silently: it is reported as
failed with a hint to pass --overwrite, which redoes it.

Determinism. Each file gets its own seed from ``--seed`` and its path relative to the input folder
(:func:`file_seed`), so its output does not depend on the order, the other files or the rank.

Throughput. A loader thread checks the next file, builds its operator and resamples it to the model rate
while the current one is sampled; the windows of consecutive files go into the same batches
(``Restorer.restore_runs``), so a large batch stays full across many short files. Memory stays bounded
by a few windows and two or three files' temporary folders, whatever the collection size.

Many processes. Under torchrun (its RANK / WORLD_SIZE / MASTER_ADDR variables present) the ranks join a
gloo group, every rank plans the same work, the files to do are dealt out largest first to the rank with
the fewest bytes so far (file size stands in for duration), each rank writes its own outputs, and rank 0
gathers the outcomes for the summary. Across machines every rank must see the same input and output
folders (a shared filesystem), e.g. on each of 2 machines:

    torchrun --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d --rdzv_endpoint HOST:29500 --rdzv_id restore1 \
        -m cqtrestore bwe /shared/recordings --cutoff 3k -o /shared/restored
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")
WRITABLE_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff")  # others (MP3) are written as FLAC
GLOB_CHARACTERS = "*?["
RECORDS = ".cqtrestore"  # the hidden folder of completion records inside the output folder
FAILURES = (ValueError, OSError, RuntimeError, MemoryError)  # a file failing this way does not stop the rest
Say = Callable[[str], None]
Finish = Callable[[], float]  # restores one prepared file; its audio seconds
Prepare = Callable[["Item"], object]  # checks and reads one file (on the loader thread): a Finish, or a run
Restore = Callable[[Iterable], Iterator]  # (item, prepared) pairs -> (item, audio seconds or error)


class CollectionError(ValueError):
    """A folder or glob that cannot be restored as a whole (one line, fit to show as it is)."""


@dataclass(frozen=True)
class Item:
    """One file of a collection: where it is, its path relative to the input root, where it goes."""

    input: Path
    relative: Path
    output: Path
    record: Path
    size: int


@dataclass(frozen=True)
class Outcome:
    """What happened to one file: restored, skipped (already complete) or failed (with the reason)."""

    relative: str
    output: str
    status: str
    audio_seconds: float = 0.0
    seconds: float = 0.0
    rank: int = 0
    reason: str = ""


# ---------------------------------------------------------------- finding files and planning outputs


def is_collection(source: Path) -> bool:
    """A folder, or a pattern with glob characters that is not itself an existing file."""
    return source.is_dir() or (not source.exists() and any(c in str(source) for c in GLOB_CHARACTERS))


def discover(source: Path) -> tuple[Path, list[Path]]:
    """(root, audio files under it, sorted) for a folder (searched recursively) or a glob pattern."""
    if source.is_dir():
        root, found = source, source.rglob("*")
    else:
        parts = source.parts
        first = next(i for i, part in enumerate(parts) if any(c in part for c in GLOB_CHARACTERS))
        root = Path(*parts[:first]) if first else Path(".")
        found = root.glob(str(Path(*parts[first:]))) if root.is_dir() else iter(())
    files = sorted(
        path
        for path in found
        if path.suffix.lower() in AUDIO_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
        and path.is_file()
    )
    if not files:
        raise CollectionError(f"{source}: no audio files found ({', '.join(AUDIO_SUFFIXES)})")
    return root, files


def default_output_folder(root: Path) -> Path:
    """ROOT.restored beside the input folder."""
    root = root.resolve()
    return root.with_name(f"{root.name}.restored")


def plan(source: Path, out_dir: Path | None = None, fmt: str | None = None) -> list[Item]:
    """The files of ``source`` and their mirrored outputs under ``out_dir`` (suffix from ``fmt`` if given)."""
    root, files = discover(source)
    out_dir = Path(out_dir) if out_dir is not None else default_output_folder(root)
    _check_output_folder(root, out_dir)
    suffix = _format_suffix(fmt)
    items, seen = [], {}
    for path in files:
        relative = path.relative_to(root)
        own = relative.suffix.lower()
        output = out_dir / relative.with_suffix(suffix or (own if own in WRITABLE_SUFFIXES else ".flac"))
        if output in seen:
            raise CollectionError(f"{seen[output]} and {relative} would both be written to {output}")
        seen[output] = relative
        record = out_dir / RECORDS / f"{output.relative_to(out_dir).as_posix()}.json"
        items.append(Item(path, relative, output, record, path.stat().st_size))
    return items


def _check_output_folder(root: Path, out_dir: Path) -> None:
    """The output folder must lie outside the input tree and must not be a file."""
    if out_dir.resolve().is_relative_to(root.resolve()):
        raise CollectionError(f"{out_dir}: the output folder must lie outside the input folder {root}")
    if out_dir.exists() and not out_dir.is_dir():
        raise CollectionError(f"{out_dir}: is a file; give a folder for the outputs of a folder input")


def _format_suffix(fmt: str | None) -> str | None:
    """``flac`` -> ``.flac``; unknown formats are an error."""
    if fmt is None:
        return None
    suffix = "." + fmt.lower().lstrip(".")
    if suffix not in WRITABLE_SUFFIXES:
        names = ", ".join(s[1:] for s in WRITABLE_SUFFIXES)
        raise CollectionError(f"unknown output format {fmt!r}: use one of {names}")
    return suffix


# ---------------------------------------------------------------- completeness, seeds, shards


def file_seed(seed: int, relative: Path) -> int:
    """A seed in [0, 2^32) for one file, from the run's seed and the file's relative path only."""
    digest = hashlib.sha256(f"{seed}\0{Path(relative).as_posix()}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _expected_record(item: Item, settings: dict) -> dict:
    """What the record of a complete output holds."""
    stat = item.input.stat()
    return {"settings": settings, "input": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}}


def state(item: Item, settings: dict) -> str:
    """'todo' (no output), 'complete' (output and matching record) or 'stale' (output, no matching record)."""
    if not item.output.exists():
        return "todo"
    try:
        record = json.loads(item.record.read_text())
    except (OSError, ValueError):
        return "stale"
    return "complete" if record == _expected_record(item, settings) else "stale"


def write_record(item: Item, settings: dict) -> None:
    """Mark ``item``'s output complete for ``settings`` (written atomically)."""
    item.record.parent.mkdir(parents=True, exist_ok=True)
    temporary = item.record.with_name(f".{item.record.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(_expected_record(item, settings), sort_keys=True))
    os.replace(temporary, item.record)


def triage(items: list[Item], settings: dict, overwrite: bool) -> tuple[list[Item], list[Outcome]]:
    """(files to restore, outcomes of those skipped as complete or failed as stale)."""
    todo, settled = [], []
    for item in items:
        found = "todo" if overwrite else state(item, settings)
        if found == "todo":
            todo.append(item)
        elif found == "complete":
            settled.append(Outcome(str(item.relative), str(item.output), "skipped"))
        else:
            reason = "output exists but was not made with these settings; pass --overwrite to redo it"
            settled.append(Outcome(str(item.relative), str(item.output), "failed", reason=reason))
    return todo, settled


def shard(items: list[Item], world: int) -> list[list[Item]]:
    """Deal files out largest first, each to the rank with the fewest bytes so far (ties: lowest rank)."""
    shares: list[list[Item]] = [[] for _ in range(world)]
    loads = [(0, rank) for rank in range(world)]
    for item in sorted(items, key=lambda item: (-item.size, str(item.relative))):
        load, rank = heapq.heappop(loads)
        shares[rank].append(item)
        heapq.heappush(loads, (load + item.size, rank))
    return shares


# ---------------------------------------------------------------- running


def run(
    items: list[Item],
    prepare_one: Prepare,
    settings: dict,
    rank: int = 0,
    say: Say | None = None,
    restore: Restore | None = None,
) -> list[Outcome]:
    """Restore each item; a failing file is recorded and skipped.

    ``prepare_one(item)`` checks and reads a file (on a loader thread, one file ahead, so reading overlaps
    sampling) and returns what ``restore`` takes: ``restore`` turns the stream of (item, prepared) pairs
    into (item, audio seconds or the error that failed the file), in any order, and may mix the windows
    of several files in one batch. The default calls each prepared ``Finish`` in turn."""
    outcomes: list[Outcome] = []
    began: dict[Item, float] = {}
    for item, result in (restore or one_by_one)(_read_ahead(items, prepare_one, began, outcomes, rank, say)):
        if isinstance(result, BaseException):
            outcomes.append(_failed(item, result, rank, say))
            continue
        try:
            write_record(item, settings)
        except OSError as error:
            outcomes.append(_failed(item, error, rank, say))
            continue
        spent = time.perf_counter() - began.pop(item)
        outcomes.append(Outcome(str(item.relative), str(item.output), "restored", result, spent, rank))
        if say is not None:
            say(f"restored {item.relative} ({result:.1f} s of audio) in {spent:.1f} s")
    return outcomes


def one_by_one(prepared: Iterable[tuple[Item, Finish]]) -> Iterator[tuple[Item, float | Exception]]:
    """``restore`` for :func:`run` that calls each file's ``Finish`` in turn."""
    for item, finish in prepared:
        try:
            yield item, finish()
        except FAILURES as error:
            yield item, error


def _read_ahead(items, prepare_one, began, outcomes, rank, say):  # noqa: ANN001, ANN202
    """(item, prepared) for each file that could be read, the next one read on a loader thread meanwhile;
    files that fail to read go to ``outcomes``; ``began`` gets each file's start time."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cqtrestore-loader") as loader:
        ahead = [loader.submit(_prepare, item, prepare_one) for item in items[:1]]
        for index, item in enumerate(items):
            current = ahead.pop()
            ahead += [loader.submit(_prepare, after, prepare_one) for after in items[index + 1 : index + 2]]
            began[item] = time.perf_counter()
            try:
                prepared = current.result()
            except FAILURES as error:
                outcomes.append(_failed(item, error, rank, say))
                continue
            yield item, prepared


def _prepare(item: Item, prepare_one: Prepare) -> object:
    """Make the output's folder, then ``prepare_one(item)`` (on the loader thread)."""
    item.output.parent.mkdir(parents=True, exist_ok=True)
    return prepare_one(item)


def _failed(item: Item, error: BaseException, rank: int, say: Say | None) -> Outcome:
    """The outcome of a file that failed, said at once."""
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    if say is not None:
        say(f"failed {item.relative}: {reason}")
    return Outcome(str(item.relative), str(item.output), "failed", rank=rank, reason=reason)


@dataclass(frozen=True)
class Summary:
    """All outcomes of a run, its wall time and the number of ranks that shared it."""

    outcomes: list[Outcome]
    wall_seconds: float
    ranks: int = 1

    def count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def audio_seconds(self) -> float:
        return sum(outcome.audio_seconds for outcome in self.outcomes)

    @property
    def real_time_factor(self) -> float | None:
        """Wall time over restored audio time (below 1: faster than real time); None if nothing ran."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds > 0 else None

    def to_json(self) -> dict:
        return {
            "files": len(self.outcomes),
            "restored": self.count("restored"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "audio_seconds": self.audio_seconds,
            "wall_seconds": self.wall_seconds,
            "real_time_factor": self.real_time_factor,
            "ranks": self.ranks,
            "outcomes": [asdict(outcome) for outcome in sorted(self.outcomes, key=lambda o: o.relative)],
        }


def summary_lines(summary: Summary) -> list[str]:
    """The end-of-run table as plain lines: counts, audio, wall time, real-time factor, failures."""
    factor = summary.real_time_factor
    lines = [
        f"{'files':<10} {len(summary.outcomes)}: {summary.count('restored')} restored, "
        f"{summary.count('skipped')} skipped (complete), {summary.count('failed')} failed",
        f"{'audio':<10} {summary.audio_seconds:.1f} s restored",
        f"{'wall time':<10} {summary.wall_seconds:.1f} s on {summary.ranks} process(es)",
        f"{'real time':<10} " + (f"{factor:.3g} x (wall time / audio time)" if factor else "-"),
    ]
    failed = sorted((o for o in summary.outcomes if o.status == "failed"), key=lambda o: o.relative)
    lines += [f"{'failed':<10} {outcome.relative}: {outcome.reason}" for outcome in failed]
    return lines


def write_report(path: Path, summary: Summary, settings: dict) -> None:
    """The summary and every file's outcome as JSON (written atomically)."""
    temporary = Path(path).with_name(f".{Path(path).name}.tmp")
    temporary.write_text(json.dumps({**summary.to_json(), "settings": settings}, indent=2) + "\n")
    os.replace(temporary, path)


def item_restorer(restorer, build_operator, make_options) -> tuple[Prepare, Restore]:  # noqa: ANN001
    """(``prepare_one``, ``restore``) for :func:`run` through the pipeline: a file is checked, its operator
    built and its pass 1 done on the loader thread; windows of consecutive files share batches.
    ``make_options(operator, item)`` gives a file's options (its own seed)."""
    from cqtrestore import tasks

    def prepare_one(item: Item):  # noqa: ANN202
        job = tasks.prepare(item.input, item.output, True, False, None, build_operator, lambda m: None)
        return restorer.start(job.input, job.output, job.operator, make_options(job.operator, item))

    def restore(prepared: Iterable) -> Iterator:
        for item, outcome in restorer.restore_runs(prepared):
            if isinstance(outcome, Exception):
                yield item, outcome
            else:
                yield item, outcome.frames / outcome.sample_rate

    return prepare_one, restore


# ---------------------------------------------------------------- torchrun


@dataclass(frozen=True)
class Ranks:
    """This process's place among torchrun's: rank, world size, local rank (its GPU on the machine)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def join_ranks() -> Ranks:
    """Join torchrun's gloo group when its variables are set (and there is more than one process)."""
    env = os.environ
    if not all(name in env for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR")) or int(env["WORLD_SIZE"]) < 2:
        return Ranks()
    import torch.distributed as dist

    if not dist.is_initialized():  # a long shard may keep the others waiting: allow a day
        dist.init_process_group("gloo", timeout=timedelta(hours=24))
    return Ranks(dist.get_rank(), dist.get_world_size(), int(env.get("LOCAL_RANK", 0)))


def barrier(ranks: Ranks) -> None:
    """Wait for every rank (no-op alone)."""
    if ranks.distributed:
        import torch.distributed as dist

        dist.barrier()


def gather(ranks: Ranks, outcomes: list[Outcome]) -> list[Outcome] | None:
    """Every rank's outcomes on rank 0 (None on the others)."""
    if not ranks.distributed:
        return outcomes
    import torch.distributed as dist

    parts: list | None = [None] * ranks.world if ranks.rank == 0 else None
    dist.gather_object(outcomes, parts, dst=0)
    return [outcome for part in parts for outcome in part] if parts is not None else None


def leave(ranks: Ranks) -> None:
    """Leave the process group (no-op alone)."""
    if ranks.distributed:
        import torch.distributed as dist

        dist.destroy_process_group()


def restore_collection(
    items: list[Item],
    prepare_one: Prepare,
    settings: dict,
    overwrite: bool,
    ranks: Ranks = Ranks(),
    say: Say | None = None,
    restore: Restore | None = None,
) -> Summary | None:
    """Triage, shard, restore this rank's share, gather: the merged Summary on rank 0, None elsewhere."""
    began = time.perf_counter()
    todo, settled = triage(items, settings, overwrite)
    barrier(ranks)  # every rank has looked at the outputs before any rank writes one
    mine = shard(todo, ranks.world)[ranks.rank]
    outcomes = gather(ranks, run(mine, prepare_one, settings, ranks.rank, say, restore))
    if outcomes is None:
        return None
    return Summary(settled + outcomes, time.perf_counter() - began, ranks.world)
