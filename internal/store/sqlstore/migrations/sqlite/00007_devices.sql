-- OTP devices: a user's second factors (TOTP, HOTP, SMS, EMAIL, PIN). The public numeric id
-- (`number`, the SCIM "id") comes from AUTOINCREMENT, so a deleted device's number is never
-- given to another device. Secrets (seeds, PIN hashes) are sealed by the keyring, bound to `id`.
-- Keep in step with migrations/postgres/00007_devices.sql.

-- +goose Up
CREATE TABLE devices (
    number       INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    user_id      TEXT NOT NULL,
    type         TEXT NOT NULL CHECK (type IN ('TOTP', 'HOTP', 'SMS', 'EMAIL', 'PIN')),
    name         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('C', 'V', 'D', 'L')),
    secret       BLOB,
    algorithm    TEXT NOT NULL DEFAULT '',
    digits       INTEGER NOT NULL DEFAULT 0,
    period_s     INTEGER NOT NULL DEFAULT 0,
    counter      INTEGER NOT NULL DEFAULT 0 CHECK (counter >= 0),
    last_step    INTEGER NOT NULL DEFAULT -1,
    phone        TEXT NOT NULL DEFAULT '',
    email        TEXT NOT NULL DEFAULT '',
    challenge_id TEXT NOT NULL DEFAULT '',
    fails        INTEGER NOT NULL DEFAULT 0 CHECK (fails >= 0),
    lockouts     INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER,
    imported     INTEGER NOT NULL DEFAULT 0 CHECK (imported IN (0, 1)),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    validated_at INTEGER,
    version      INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX devices_user ON devices (tenant_id, user_id, number);
CREATE INDEX devices_tenant ON devices (tenant_id, number);

-- +goose Down
DROP TABLE devices;
