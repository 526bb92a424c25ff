-- Which surface a verification session belongs to ('' = the native API; bsg, openiam, device,
-- user_otp). A surface acts only on its own sessions: the native API cannot resend a user OTP
-- or check a device's code around the device's lockout.

-- +goose Up
ALTER TABLE challenges ADD COLUMN surface TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE challenges DROP COLUMN surface;
