-- Local users of the web UI. Passwords are stored only as Argon2id hashes (PHC strings).
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    disabled_at     INTEGER
);

-- Which projects a user may see.
CREATE TABLE user_projects (
    user_id     TEXT NOT NULL REFERENCES users(id),
    project_id  TEXT NOT NULL REFERENCES projects(id),
    PRIMARY KEY (user_id, project_id)
) WITHOUT ROWID;

-- Signed-in browsers: only the SHA-256 of the session token is kept, like API keys.
CREATE TABLE ui_sessions (
    token_hash  BLOB PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX ui_sessions_by_user ON ui_sessions (user_id);
