-- Columns several surfaces share: a challenge's device (OTP devices with SMS/EMAIL challenges)
-- and dialect handle (e.g. OpenIAM's moving factor, unique per tenant); a message's sender id,
-- the channel it falls back to when it finally fails (Viber → SMS), and its price.

-- +goose Up
ALTER TABLE challenges ADD COLUMN device_id TEXT NOT NULL DEFAULT '';
ALTER TABLE challenges ADD COLUMN handle TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX challenges_handle ON challenges (tenant_id, handle) WHERE handle <> '';
ALTER TABLE messages ADD COLUMN sender TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN fallback_channel TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN price TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN currency TEXT NOT NULL DEFAULT '';

-- +goose Down
DROP INDEX challenges_handle;
ALTER TABLE messages DROP COLUMN currency;
ALTER TABLE messages DROP COLUMN price;
ALTER TABLE messages DROP COLUMN fallback_channel;
ALTER TABLE messages DROP COLUMN sender;
ALTER TABLE challenges DROP COLUMN handle;
ALTER TABLE challenges DROP COLUMN device_id;
