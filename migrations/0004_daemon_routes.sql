-- 0004_daemon_routes: the routes the running daemon works with (issue 13.4).
-- The daemon writes this row at start (and after a reload); `leadflow submit` and
-- `leadflow retry` read it while that daemon runs, so that they never send a file to a route
-- the daemon does not know (the settings file may have changed under it).
CREATE TABLE daemon_routes (
    id INTEGER PRIMARY KEY CHECK (id = 1),  -- one row: what the last daemon recorded
    pid INTEGER NOT NULL,                   -- that daemon's process id
    routes TEXT NOT NULL,                   -- JSON list: each route's settings, in order
    recorded_at REAL NOT NULL
);
