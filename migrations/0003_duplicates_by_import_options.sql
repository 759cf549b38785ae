-- 0003_duplicates_by_import_options: a duplicate is the same bytes imported with the same
-- import options (issue 13.2); a file may be imported again on purpose ("forced").

-- The import options a file's uploads are sent with, as one JSON array in a fixed order:
-- [kind, lookupField, listId, partitionName, programId, programMemberStatus, objectApiName]
-- (orchestrator/intake/uploads.py import_key builds the same text).
ALTER TABLE files ADD COLUMN import_key TEXT;
-- 1: imported on purpose although the same bytes and options were imported before (a name
-- with ".force.", or `leadflow submit --force`); never a duplicate, and not in the index.
ALTER TABLE files ADD COLUMN forced INTEGER NOT NULL DEFAULT 0 CHECK (forced IN (0, 1));

UPDATE files SET import_key = json_array(
        json_extract(info, '$.route.kind'),
        json_extract(info, '$.route.lookupField'),
        json_extract(info, '$.route.listId'),
        json_extract(info, '$.route.partitionName'),
        json_extract(info, '$.route.programId'),
        json_extract(info, '$.route.programMemberStatus'),
        json_extract(info, '$.route.objectApiName'))
WHERE json_valid(info) AND json_type(info, '$.route') = 'object';

-- One import per content and options: a second file with the same bytes and options is a
-- duplicate (a forced one excepted).
DROP INDEX files_sha256_imported;
CREATE UNIQUE INDEX files_import_imported ON files (sha256, COALESCE(import_key, ''))
    WHERE status IN ('queued', 'reporting', 'complete', 'partial') AND forced = 0;
