-- sessiond schema: one-time codes by SMS and email. A user's verified email and phone (set by the
-- CLI), and whether each method is enabled for them.
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN phone TEXT;
ALTER TABLE users ADD COLUMN otp_email INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN otp_sms INTEGER NOT NULL DEFAULT 0;
