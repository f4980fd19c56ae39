"""The polars encoding pipeline: raw table(s) -> validated -> split -> vocabularies fitted on train
-> int32 ids in parquet + ``feature_map.json``, cached under the content hash of the sources and
the preprocessing config.

Steps (every one vectorized or streaming; nothing loops over rows in Python):

1. ``open_table``: the file exists, is not empty, its header holds the required columns, every
   record has the expected number of fields and every byte is UTF-8 (checked in 16 MiB chunks
   with numpy, so a 11 GB file is never held whole; RFC 4180 quotes understood: a separator or
   newline inside ``"..."`` belongs to the field). A UTF-8 byte order mark is skipped. Returns how
   to ``scan_csv`` it (string columns).
2. ``table_frames``: one lazy frame of all rows: label, one token per field (numeric fields
   bucketed to integers: ``floor(ln(x)^2)`` for x > 2, else ``int(x)``, the AutoInt/FuxiCTR
   Criteo preprocessing; or DAGFM's ``ceil(ln(x)^2 + 1)``), the split (given files, or a seeded
   hash of the row number) and per-row flags for bad labels / non-numbers.
3. ``_encode`` stages that frame to parquet in one streaming pass over the text, reports the first
   flagged row (file, line, column, value), fits vocabularies on **train only** (values seen at
   least ``min_count`` times, ordered by count then value, ids from 2; 0 = OOV/rare, 1 = missing,
   see ``data/spec.py``) and writes each split with ``sink_parquet``, all inside a temporary
   directory renamed into place only when complete, so a half-written cache is never read.
"""

from __future__ import annotations

import bisect
import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl
import torch

from kdrec.artifacts import atomic_write_json, file_digest, signature
from kdrec.cache import cached_dir
from kdrec.data.registry import DataPaths
from kdrec.data.spec import MISSING_ID, OOV_ID, RESERVED_IDS, CTRDataset, CTRSplit, FeatureMap, FieldInfo
from kdrec.errors import ConfigError, DataError

ENCODER_VERSION = 1  # bump when the encoding of the same inputs and config changes
SPLITS = ("train", "valid", "test")
ROW = "__row"
SPLIT = "__split"
TIME = "__time"  # optional int64 event time (unix seconds) a source may hand over; kept per row
KINDS = ("categorical", "numeric")
NUMERIC_TRANSFORMS = ("log_square", "log_square_ceil", "floor")
_CHUNK = 1 << 24
_MAX_RECORD = 1 << 26  # a record longer than this is an unclosed quote, not data
BOM = b"\xef\xbb\xbf"
QUOTE = ord('"')


# ------------------------------------------------------------------ declarative spec
@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str = "categorical"  # categorical | numeric (bucketed, then categorical ids)
    min_count: int | None = None  # per-field override of the dataset's min_count
    source: str | None = None  # raw column it is read from (default: name)

    @property
    def column(self) -> str:
        return self.source or self.name


def parse_fields(entries: Any, where: str) -> list[FieldSpec]:
    """``fields:`` entries are a column name (categorical) or a mapping {name, kind, min_count}."""
    if not entries:
        raise ConfigError(f"{where}: `fields` is empty; list the feature columns")
    out: list[FieldSpec] = []
    for i, e in enumerate(entries):
        if isinstance(e, str):
            out.append(FieldSpec(e))
            continue
        if not isinstance(e, dict) or "name" not in e:
            raise ConfigError(f"{where}: fields[{i}] must be a column name or a mapping with `name`, got {e!r}")
        bad = sorted(set(e) - {"name", "kind", "min_count", "source"})
        if bad:
            raise ConfigError(f"{where}: fields[{i}] ({e['name']}): unknown key(s) {bad}; "
                              "valid: ['kind', 'min_count', 'name', 'source']")
        spec = FieldSpec(str(e["name"]), str(e.get("kind", "categorical")), e.get("min_count"), e.get("source"))
        if spec.kind not in KINDS:
            raise ConfigError(f"{where}: fields[{i}] ({spec.name}): kind must be one of {KINDS}, not {spec.kind!r}")
        out.append(spec)
    names = [f.name for f in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{where}: duplicate field name(s) {dup}")
    return out


@dataclass
class EncodeOptions:
    """The preprocessing settings shared by every table source (part of the cache signature)."""

    min_count: int = 1
    numeric_transform: str = "log_square"
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = 2024
    x_dtype: str = "int64"  # in-memory dtype of x (parquet always holds int32)


# ------------------------------------------------------------------ files
def resolve(paths: DataPaths, rel: str) -> Path:
    p = Path(rel).expanduser()
    return p if p.is_absolute() else Path(paths.data_root) / p


def require_file(path: Path, paths: DataPaths | None = None) -> None:
    if path.is_file():
        return
    root = f" (data root now: {Path(paths.data_root).resolve()})" if paths is not None else ""
    raise DataError(f"{path}: file not found{root}. Point KDREC_DATA_DIR (or the override "
                    f"paths.data_root=...) at the folder that holds the dataset's files.")


def _decode_line(raw: bytes) -> str:
    return raw.rstrip(b"\r\n").decode("utf-8", errors="replace")


def _utf8_error(path: Path, body: bytes, exc: UnicodeDecodeError, first_line: int) -> DataError:
    pos = exc.start
    line = first_line + body.count(b"\n", 0, pos)
    col = pos - (body.rfind(b"\n", 0, pos) + 1) + 1
    return DataError(f"{path}: line {line}, byte {col} of the line: byte 0x{body[pos]:02x} is not valid "
                     "UTF-8; re-save the file as UTF-8")


@dataclass
class TableFile:
    path: Path
    columns: list[str]
    separator: str
    header: bool
    utf8: bool = True  # False: a legacy 8-bit file (MovieLens' u.item); undecodable bytes replaced
    # records (0 = first line of the file) that span several lines (a quoted newline), and the
    # extra lines of all records up to and including each: a data row's line number stays exact
    multiline: list[int] = field(default_factory=list)
    extra_lines: list[int] = field(default_factory=list)

    @property
    def first_data_line(self) -> int:
        return 2 if self.header else 1

    def record_line(self, record: int) -> int:
        """1-based line on which ``record`` (0 = the file's first record) starts."""
        k = bisect.bisect_left(self.multiline, record)
        return record + 1 + (self.extra_lines[k - 1] if k else 0)

    def locate(self, row: int) -> str:
        return f"line {self.record_line(row + self.first_data_line - 1)}"

    def scan(self, quoted: bool = False) -> pl.LazyFrame:
        return pl.scan_csv(self.path, has_header=self.header, separator=self.separator,
                           new_columns=None if self.header else self.columns, infer_schema=False,
                           quote_char='"' if quoted else None, raise_if_empty=False,
                           encoding="utf8" if self.utf8 else "utf8-lossy")


def open_table(path: Path, *, required: list[str], separator: str = "auto", header: Any = "auto",
               columns: list[str] | None = None, quoted: bool = False,
               paths: DataPaths | None = None, utf8: bool = True) -> TableFile:
    """Check a delimited text file's shape and return how to scan it (see module docstring)."""
    require_file(path, paths)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes); expected a header line or data rows")
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    head = head.removeprefix(BOM)
    first_raw = head.split(b"\n", 1)[0]
    try:
        first = first_raw.rstrip(b"\r").decode("utf-8" if utf8 else "latin-1")
    except UnicodeDecodeError as exc:
        raise _utf8_error(path, head, exc, 1) from None
    if separator == "auto":
        separator = "\t" if "\t" in first else ","
    if len(separator) != 1:
        raise ConfigError(f"separator must be one character or 'auto', not {separator!r}")
    if quoted:  # a quoted header name may hold the separator
        tokens = [t.strip() for t in next(csv.reader([first], delimiter=separator, quotechar='"'), [])]
    else:
        tokens = [t.strip().strip('"') for t in first.split(separator)]
    if header == "auto":
        header = bool(columns) and tokens[:1] == columns[:1] or (not columns and True)
    header = bool(header)
    if header:
        names = tokens
        missing = [c for c in required if c not in names]
        if missing:
            raise DataError(f"{path}: line 1 (header): missing required column(s) {missing}; "
                            f"the header has {names}")
    else:
        if not columns:
            raise ConfigError(f"{path}: the file has no header line; list its column names in `columns`")
        names = list(columns)
        missing = [c for c in required if c not in names]
        if missing:
            raise ConfigError(f"`columns` lacks required column(s) {missing}")
    table = TableFile(path, names, separator, header, utf8)
    n_rows = _check_structure(table, quoted)
    if n_rows == 0:
        raise DataError(f"{path}: empty file: no data rows" + (" after the header line" if header else ""))
    return table


def _check_structure(t: TableFile, quoted: bool) -> int:
    """Stream the file in chunks: every record has len(columns) fields, every byte is UTF-8.
    With ``quoted``, separators and newlines inside RFC 4180 quotes do not count (a quote's
    parity is the number of quote characters before it; ``""`` inside a field toggles twice).
    Returns the number of data rows; fills ``t.multiline`` for records spanning several lines."""
    sep = ord(t.separator)
    want = len(t.columns) - 1
    line_no, records, extra, carry = 1, 0, 0, b""
    with open(t.path, "rb") as fh:
        first = True
        while True:
            block = fh.read(_CHUNK)
            if first:
                block, first = block.removeprefix(BOM), False
            data = carry + block
            if not block and not data:
                break
            if not block and not data.endswith(b"\n"):
                data += b"\n"
            arr = np.frombuffer(data, dtype=np.uint8)
            nl = np.flatnonzero(arr == 10)
            qpos = np.flatnonzero(arr == QUOTE) if quoted else None
            ends = nl  # record ends: newlines outside quotes
            if qpos is not None and len(qpos):
                ends = nl[np.searchsorted(qpos, nl) % 2 == 0]
            if block:
                if not len(ends):
                    if len(data) > _MAX_RECORD:
                        _check_quotes(t, arr, qpos, nl, line_no, len(data))
                        raise _unclosed_quote(t, line_no)
                    carry = data
                    continue
                cut = int(ends[-1]) + 1
                body, carry = data[:cut], data[cut:]
            else:
                if qpos is not None and len(qpos) % 2:
                    _check_quotes(t, arr, qpos, nl, line_no, len(data))
                    raise _unclosed_quote(t, line_no + int(np.searchsorted(nl, ends[-1], side="right")
                                                           if len(ends) else 0))
                body, carry = data, b""
            if qpos is not None and len(qpos):
                _check_quotes(t, arr, qpos, nl, line_no, len(body))
            arr = arr[:len(body)]
            if t.utf8 and (arr >= 0x80).any():
                try:
                    body.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise _utf8_error(t.path, body, exc, line_no) from None
            nl = nl[nl < len(body)]
            # physical lines before each record's start (records may hold quoted newlines)
            raw_end = np.searchsorted(nl, ends)
            starts_line = line_no + np.concatenate(([0], raw_end[:-1] + 1))
            spans = np.diff(raw_end, prepend=-1) - 1
            for r in np.flatnonzero(spans > 0):  # rare: only records with a quoted newline
                extra += int(spans[r])
                t.multiline.append(records + int(r))
                t.extra_lines.append(extra)
            seps = np.flatnonzero(arr == sep)
            if qpos is not None and len(qpos):
                seps = seps[np.searchsorted(qpos, seps) % 2 == 0]
            per_record = np.diff(np.searchsorted(seps, ends), prepend=0)
            bad = per_record != want
            if records == 0 and t.header:
                bad[0] = False
            # a lone trailing "\r" or nothing at all is a blank line: still wrong if want > 0
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                start = int(ends[i - 1]) + 1 if i > 0 else 0
                text = _decode_line(body[start:int(ends[i])])
                what = "an empty line" if not text.strip() else f"{int(per_record[i]) + 1} field(s)"
                hint = (" (quoted fields understood; if '\"' is plain text in this file, set "
                        "dataset.quoted=false)" if quoted and '"' in text else "")
                raise DataError(
                    f"{t.path}: line {int(starts_line[i])}: expected {want + 1} columns separated by "
                    f"{t.separator!r}, found {what}: {text[:120]!r}{hint}")
            records += len(ends)
            line_no += len(nl)
            if not block:
                break
    return records - (1 if t.header else 0)


def _check_quotes(t: TableFile, arr: np.ndarray, qpos: np.ndarray, nl: np.ndarray, line_no: int,
                  upto: int) -> None:
    """RFC 4180 places quotes only around a whole field (``"a, b"``) or doubled inside one
    (``"say ""hi"" now"``): by parity, an opening quote follows a separator, a line start or another
    quote, and a closing one precedes a separator, a line end or another quote. Anything else (a
    quote inside an unquoted field: ``5" screen``) would make the separator count disagree with
    the parser, so it is reported with a way out."""
    q = qpos[qpos < upto]
    if not len(q):
        return
    sep = ord(t.separator)
    prev = np.where(q > 0, arr[np.maximum(q - 1, 0)], 10)
    nxt = np.where(q + 1 < len(arr), arr[np.minimum(q + 1, len(arr) - 1)], 10)
    opens = (prev == sep) | (prev == 10) | (prev == QUOTE)
    closes = (nxt == sep) | (nxt == 10) | (nxt == 13) | (nxt == QUOTE)
    bad = np.where(np.arange(len(q)) % 2 == 0, ~opens, ~closes)
    if not bad.any():
        return
    pos = int(q[np.flatnonzero(bad)[0]])
    start = int(nl[np.searchsorted(nl, pos) - 1]) + 1 if np.searchsorted(nl, pos) > 0 else 0
    end = int(nl[np.searchsorted(nl, pos)]) if np.searchsorted(nl, pos) < len(nl) else len(arr)
    text = _decode_line(arr[start:end].tobytes())
    raise DataError(f"{t.path}: line {line_no + int(np.searchsorted(nl, pos))}: a '\"' in the middle of a "
                    f"field ({text[:120]!r}); RFC 4180 quotes whole fields (\"5\"\" wide\"). If '\"' is "
                    "plain text in this file, set dataset.quoted=false")


def _unclosed_quote(t: TableFile, line: int) -> DataError:
    return DataError(f"{t.path}: line {line}: a quoted field is never closed (an opening '\"' without "
                     "its closing one); fix the quoting, or set dataset.quoted=false if '\"' is plain text")


def label_check(label: str) -> pl.Expr:
    """True where the label is not 0 or 1 (missing included)."""
    v = pl.col(label).str.strip_chars().cast(pl.Float64, strict=False)
    return v.is_null() | ~v.is_in([0.0, 1.0])


def numeric_check(col: str) -> pl.Expr:
    raw = pl.col(col).str.strip_chars()
    return raw.is_not_null() & (raw != "") & raw.cast(pl.Float64, strict=False).is_null()


def check_values(t: TableFile, lf: pl.LazyFrame, checks: dict[str, tuple[pl.Expr, str]]) -> None:
    """``checks``: column -> (bad-row expression, what is expected). One pass over the file; the
    first offending row of each column is reported (the earliest line wins)."""
    if not checks:
        return
    lf = lf.with_row_index(ROW)
    firsts = lf.select([pl.col(ROW).filter(expr).first().alias(col) for col, (expr, _) in checks.items()]
                       ).collect(engine="streaming").row(0, named=True)
    hits = sorted((row, col) for col, row in firsts.items() if row is not None)
    if not hits:
        return
    row, col = hits[0]
    value = lf.filter(pl.col(ROW) == row).select(col).collect().item()
    raise DataError(f"{t.path}: {t.locate(row)}, column {col!r}: "
                    f"value {value!r} is not {checks[col][1]}")


@dataclass
class ParquetTable:
    """A parquet source: shape checks come from its schema; rows are reported 1-based."""

    path: Path
    columns: list[str]

    def locate(self, row: int) -> str:
        return f"row {row + 1}"

    def scan(self, quoted: bool = False) -> pl.LazyFrame:
        lf = pl.scan_parquet(self.path)
        lf = lf.with_columns(pl.col(pl.Boolean).cast(pl.Int8)).select(pl.all().cast(pl.String))
        return lf.with_columns(pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c)
                               for c in self.columns)  # empty = missing, as in the text readers


def open_parquet(path: Path, *, required: list[str], paths: DataPaths | None = None) -> ParquetTable:
    require_file(path, paths)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    try:
        names = list(pl.scan_parquet(path).collect_schema().names())
        rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    except Exception as exc:  # not a parquet file, truncated footer, ...
        raise DataError(f"{path}: cannot read as parquet: {exc}") from None
    missing = [c for c in required if c not in names]
    if missing:
        raise DataError(f"{path}: missing required column(s) {missing}; the file has {names}")
    if rows == 0:
        raise DataError(f"{path}: empty file: no rows")
    return ParquetTable(path, names)


# ------------------------------------------------------------------ encoding
def numeric_token(col: str, transform: str) -> pl.Expr:
    v = pl.col(col).str.strip_chars().cast(pl.Float64, strict=False)
    if transform == "log_square":  # AutoInt / FuxiCTR: floor(ln(v)^2) for v > 2
        v = pl.when(v > 2).then(v.log().pow(2).floor()).otherwise(v)
    elif transform == "log_square_ceil":  # DAGFM's criteo_parse.py: ceil(ln(v)^2 + 1) for v > 2
        v = pl.when(v > 2).then((v.log().pow(2) + 1).ceil()).otherwise(v)
    elif transform != "floor":
        raise ConfigError(f"numeric_transform must be one of {NUMERIC_TRANSFORMS}, not {transform!r}")
    # truncation toward zero, as int() in the reference preprocessing
    return v.cast(pl.Int64, strict=False)


def tokens(fields: list[FieldSpec], opts: EncodeOptions) -> list[pl.Expr]:
    """Each field as a token (null = missing): categorical fields keep their string (the readers
    already turn empty strings into nulls), numeric fields become their integer bucket (Int64)."""
    out = []
    for f in fields:
        if f.kind == "numeric":
            e = numeric_token(f.column, opts.numeric_transform)
        else:
            e = pl.col(f.column).cast(pl.String)
        out.append(e.alias(f.name))
    return out


def fit_vocab(train: pl.LazyFrame, fields: list[FieldSpec], opts: EncodeOptions) -> pl.DataFrame:
    """(field, value, count, id) for values kept in each field's vocabulary, from train rows only:
    one value count per field (run together), kept if count >= min_count, ordered by count
    (desc) then value; ids from 2."""
    queries = [train.select(pl.col(f.name).alias("value")).drop_nulls("value")
               .group_by("value").agg(pl.len().alias("count"))
               .filter(pl.col("count") >= (f.min_count if f.min_count is not None else opts.min_count))
               .select(pl.lit(f.name).alias("field"), pl.col("value").cast(pl.String), "count")
               for f in fields]
    counts = pl.concat(pl.collect_all(queries, engine="streaming"))
    return (counts.sort(["field", "count", "value"], descending=[False, True, False])
            .with_columns((pl.int_range(pl.len()).over("field") + RESERVED_IDS).cast(pl.Int32).alias("id")))


def encode_exprs(fields: list[FieldSpec], vocab: pl.DataFrame) -> list[pl.Expr]:
    """Token -> id per field as an elementwise cast to an ``Enum`` of the field's vocabulary in id
    order (streams in constant memory, unlike a dictionary ``replace``): unknown -> null -> OOV 0,
    missing -> 1, known -> position + 2."""
    out = []
    parts = vocab.sort("id").partition_by("field", as_dict=True, maintain_order=True)
    for f in fields:
        v = parts.get((f.name,))
        cats = v["value"].to_list() if v is not None else []
        col = pl.col(f.name).cast(pl.String)
        known = (col.cast(pl.Enum(cats), strict=False).to_physical().cast(pl.Int32) + RESERVED_IDS
                 if cats else pl.lit(None, pl.Int32))
        out.append(pl.when(col.is_null()).then(pl.lit(MISSING_ID, pl.Int32))
                   .otherwise(known.fill_null(OOV_ID)).cast(pl.Int32).alias(f.name))
    return out


def hash_split(lf: pl.LazyFrame, fractions: list[float], seed: int) -> pl.LazyFrame:
    """Add ``__split`` (0 train, 1 valid, 2 test) from a seeded hash of the row number: each row
    lands in a split with the configured probability (exact in expectation, stable for a given
    polars version, which is part of the cache signature), without holding a permutation."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(f"split must be three non-negative fractions summing to 1, not {list(fractions)}")
    scale = 1_000_000
    c1 = int(round(fractions[0] * scale))
    c2 = int(round((fractions[0] + fractions[1]) * scale))
    h = pl.col(ROW).hash(seed) % scale
    return lf.with_columns(pl.when(h < c1).then(0).when(h < c2).then(1).otherwise(2)
                           .cast(pl.UInt8).alias(SPLIT))


@dataclass
class Prepared:
    """What a source hands the encoder: one lazy frame of all rows holding ``label`` (float), one
    string column per field (see ``tokens``) and ``__split`` (0 train, 1 valid, 2 test); optionally
    ``__time`` (int64 unix seconds), stored beside the ids and loaded as ``CTRSplit.t``."""

    combined: pl.LazyFrame
    files: list[Path]
    validate: Callable[[pl.LazyFrame], None] | None = None  # raises DataError on the staged rows


def digest_files(files: list[Path], cache_root: Path) -> str:
    """Content hash of the sources, memoised by (path, size, mtime) so a large unchanged file is
    not re-read on every run."""
    memo_path = Path(cache_root) / "digests.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    keys = []
    for p in files:
        st = Path(p).stat()
        keys.append(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}")
    key = "\n".join(sorted(keys))
    if key in memo:
        return memo[key]
    d = file_digest(files)
    memo[key] = d
    try:
        atomic_write_json(memo_path, memo)
    except OSError:
        pass
    return d


def cache_signature(name: str, config: dict, files: list[Path], cache_root: Path) -> str:
    return signature(name, config, ENCODER_VERSION, pl.__version__, digest_files(files, cache_root))


def build_ctr(name: str, config: Any, paths: DataPaths, fields: list[FieldSpec], opts: EncodeOptions,
              files: list[Path], prepare: Callable[[], Prepared], label: str = "label") -> CTRDataset:
    """Read the encoded cache for (sources, config) or encode it first; return the dataset."""
    for p in files:
        require_file(p, paths)
    cfg_dict = asdict(config) if hasattr(config, "__dataclass_fields__") else dict(config)
    sig = cache_signature(name, cfg_dict, files, paths.cache_root)
    final = Path(paths.cache_root) / f"{name}-{sig}"
    cached_dir(final, lambda tmp: _encode(name, sig, tmp, fields, opts, prepare, label, cfg_dict),
               what=f"dataset {name} encoding")
    return load_encoded(final, opts.x_dtype, sig)


def _encode(name, sig, tmp: Path, fields, opts, prepare, label, cfg_dict) -> None:
    """Encode into ``tmp`` (a temporary directory :func:`kdrec.cache.cached_dir` commits)."""
    prepared = prepare()  # validates the inputs; raises DataError before anything is written
    # one streaming pass over the raw text: tokens + split -> a staged parquet; every later
    # pass (vocabularies, encoding) reads columns of that instead of re-parsing the text
    staged = tmp / "_tokens.parquet"
    prepared.combined.sink_parquet(staged, compression="lz4")
    src = pl.scan_parquet(staged)
    if prepared.validate is not None:
        prepared.validate(src)
    vocab = fit_vocab(src.filter(pl.col(SPLIT) == 0), fields, opts)
    exprs = encode_exprs(fields, vocab)
    if TIME in src.collect_schema().names():
        exprs.append(pl.col(TIME).cast(pl.Int64))
    stats: dict[str, dict] = {}
    for i, split in enumerate(SPLITS):
        out = tmp / f"{split}.parquet"
        (src.filter(pl.col(SPLIT) == i)
         .select([pl.col(label).cast(pl.Float32).alias("label"), *exprs]).sink_parquet(out))
        stats[split] = _split_stats(out, fields)
    staged.unlink()
    infos = [FieldInfo(f.name, RESERVED_IDS + int((vocab["field"] == f.name).sum()), f.kind) for f in fields]
    fmap = FeatureMap(name, infos, label="label", extra={
        "signature": sig, "oov_id": OOV_ID, "missing_id": MISSING_ID, "encoder_version": ENCODER_VERSION,
        "config": cfg_dict, "stats": stats})
    fmap.save(tmp / "feature_map.json")


def _split_stats(path: Path, fields: list[FieldSpec]) -> dict:
    names = [f.name for f in fields]
    row = pl.scan_parquet(path).select(
        pl.len().alias("rows"), pl.col("label").sum().alias("positives"),
        *[(pl.col(n) == OOV_ID).mean().alias(f"oov:{n}") for n in names],
        *[(pl.col(n) == MISSING_ID).mean().alias(f"missing:{n}") for n in names],
    ).collect(engine="streaming").row(0, named=True)
    return {"rows": int(row["rows"]), "positives": float(row["positives"] or 0),
            "oov_share": {n: float(row[f"oov:{n}"] or 0) for n in names},
            "missing_share": {n: float(row[f"missing:{n}"] or 0) for n in names}}


def load_encoded(directory: Path, x_dtype: str = "int64", sig: str = "") -> CTRDataset:
    fmap = FeatureMap.load(directory / "feature_map.json")
    dtype = {"int64": torch.int64, "int32": torch.int32}.get(x_dtype)
    if dtype is None:
        raise ConfigError(f"x_dtype must be int64 or int32, not {x_dtype!r}")
    splits = {}
    for split in SPLITS:
        df = pl.read_parquet(directory / f"{split}.parquet")
        x = torch.from_numpy(df.select(fmap.field_names).to_numpy(writable=True).astype(np.int32, copy=False))
        y = torch.from_numpy(df["label"].to_numpy(writable=True).astype(np.float32, copy=False))
        t = torch.from_numpy(df[TIME].to_numpy(writable=True)) if TIME in df.columns else None
        splits[split] = CTRSplit(x.to(dtype), y, t)
    return CTRDataset(fmap, splits, source_dir=directory, signature=sig or fmap.extra.get("signature", ""))


def iter_parquet_batches(path: Path, field_names: list[str], batch_rows: int = 1 << 16):
    """For splits larger than memory: yield (x int32 [B, F], y float32 [B]) tensors one parquet
    record batch at a time (row groups are read lazily by pyarrow)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    for rb in pf.iter_batches(batch_size=batch_rows, columns=["label", *field_names]):
        df = pl.from_arrow(rb)
        yield (torch.from_numpy(df.select(field_names).to_numpy(writable=True).astype(np.int32, copy=False)),
               torch.from_numpy(df["label"].to_numpy(writable=True).astype(np.float32, copy=False)))


# ------------------------------------------------------------------ the common table source
FILE = "__file"
BAD = "__bad:"


def table_frames(tables: dict[str, TableFile], fields: list[FieldSpec], label: str, opts: EncodeOptions,
                 quoted: bool = False, derive: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None,
                 label_expr: pl.Expr | None = None,
                 extra_checks: dict[str, tuple[pl.Expr, str]] | None = None) -> Prepared:
    """All rows as (label, field tokens, __split) from checked tables: either one table per
    split, or ``{"all": table}`` split by ``hash_split``. Value checks (label 0/1, numbers) ride
    along as ``__bad:<column>`` flags in the same pass and are reported by ``Prepared.validate``."""
    parts, all_checks = [], []
    for k, (key, t) in enumerate(tables.items()):
        lf = t.scan(quoted).with_row_index(ROW)
        checks = {label: (label_check(label), "a label 0 or 1")} if label_expr is None else {}
        for f in fields:
            if f.kind == "numeric" and f.column in t.columns:
                checks[f.column] = (numeric_check(f.column), "a number")
        checks.update({c: v for c, v in (extra_checks or {}).items() if c in t.columns})
        all_checks.append(checks)
        flags = [expr.fill_null(False).alias(BAD + col) for col, (expr, _) in checks.items()]
        if derive is not None:
            lf = derive(lf)
        lab = (label_expr if label_expr is not None
               else pl.col(label).str.strip_chars().cast(pl.Float32, strict=False)).alias("label")
        body = [lab, *tokens(fields, opts), pl.col(ROW), pl.lit(k, pl.UInt8).alias(FILE), *flags]
        if key == "all":
            parts.append(hash_split(lf, opts.split, opts.seed).select(*body, SPLIT))
        else:
            parts.append(lf.select(*body, pl.lit(SPLITS.index(key), pl.UInt8).alias(SPLIT)))
    tabs = list(tables.values())

    def validate(staged: pl.LazyFrame) -> None:
        names = [c for c in staged.collect_schema().names() if c.startswith(BAD)]
        if not names:
            return
        first = (staged.filter(pl.any_horizontal(names)).select(FILE, ROW, *names)
                 .sort(FILE, ROW).head(1).collect())
        if first.height == 0:
            return
        row = first.row(0, named=True)
        k, r = row[FILE], row[ROW]
        col = next(c for c in all_checks[k] if row.get(BAD + c))
        t = tabs[k]
        value = t.scan(quoted).slice(r, 1).select(col).collect().item()
        raise DataError(f"{t.path}: {t.locate(r)}, column {col!r}: value {value!r} is not {all_checks[k][col][1]}")

    combined = pl.concat(parts, how="diagonal") if len(parts) > 1 else parts[0]
    return Prepared(combined, [t.path for t in tabs], validate)


def check_file_keys(files: dict, where: str) -> None:
    keys = set(files)
    if keys == {"all"} or keys == set(SPLITS):
        return
    raise ConfigError(f"{where}: `files` must be {{train, valid, test}} or {{all}} (split by `split`), "
                      f"got {sorted(keys)}")
