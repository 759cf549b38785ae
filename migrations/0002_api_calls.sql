-- Calls of the last rate window, kept across restarts (issue 12.1).
--
-- Marketo's 20-second window belongs to the instance, not to a process: calls a daemon made
-- just before it died still count at Marketo. The governor writes a row before each call is
-- sent and stamps `answered_at` when the call is over; a new process reads the rows still in
-- the window at its first call. A row with no `answered_at` was in flight when its process
-- died: it counts as made, and the next process stamps it with its own start time.
-- Rows older than the window are deleted as calls finish.
CREATE TABLE api_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint TEXT NOT NULL,     -- usage key, as in api_usage.endpoint
    day TEXT NOT NULL,          -- quota day (America/Chicago) it was counted on in api_usage
    sent_at REAL NOT NULL,      -- epoch seconds: admitted by the governor, about to be sent
    answered_at REAL            -- epoch seconds: over (answered or failed); NULL while in flight
);

CREATE INDEX api_calls_answered_at ON api_calls (answered_at);
