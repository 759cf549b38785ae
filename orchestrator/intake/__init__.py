"""Intake: the watched inbox, and turning any lead file into clean uploads.

Public API: ``Intake`` (``recover``, ``scan_once``, ``run``), the field catalogue
(``Catalogue``, ``LeadFieldLike``, ``Field``), ``prepare_file`` with ``PrepareSpec`` and
``Prepared``, and ``Unimportable``.

Decisions (each is documented where it is made):

- ``watcher``: a file is taken when its size and mtime have not changed for
  ``intake.stable_s`` in our own observations, or at once when a watch event shows it was
  moved in complete; dot files, ``*.tmp``, ``*.part``, ``~$*`` are ignored; symlinks and
  special files are ignored and logged once; an inbox folder that is no route is left alone
  (its files stay where they are) and logged once (``inbox_folder_ignored``).
- ``split``: 1024 bytes are reserved for the multipart framing, so an upload file is at most
  ``limits.max_upload_bytes - 1024`` bytes.
- ``encoding``: BOM, then strict UTF-8, then a guess from a bounded sample (Windows-1252
  preferred among Western code pages that read the sample alike); a file that is UTF-8 with
  a few broken bytes is refused rather than guessed (mojibake).
- ``lines``: the source is split into lines exactly as a ``newline=""`` text file would be;
  a comma-separated batch whose records are all accepted and whose text is already what
  ``csv.writer`` writes (minimal quoting, CRLF) is copied to the upload as it is (same
  bytes, no second serialisation); other text goes through ``csv.writer``.
- ``rows``: rows whose every field is empty (``,,,``) are skipped like blank lines.
- ``duplicates``: lookup values are compared trimmed, and lower-cased for email; every row is
  still sent (Marketo upserts in file order); repeats are counted and the first 1000 listed.
- ``service``: files of one scan are prepared up to four at a time; a describe failure keeps
  files ``received`` until the catalogue is back; an unmovable inbox file is rejected once.
"""

from __future__ import annotations

from orchestrator.intake.fields import Catalogue, Field, LeadFieldLike
from orchestrator.intake.prepare import Prepared, PrepareSpec, prepare_file
from orchestrator.intake.reasons import Unimportable
from orchestrator.intake.service import Intake
from orchestrator.settings import MULTIPART_OVERHEAD

__all__ = [
    "MULTIPART_OVERHEAD",
    "Catalogue",
    "Field",
    "Intake",
    "LeadFieldLike",
    "PrepareSpec",
    "Prepared",
    "Unimportable",
    "prepare_file",
]
