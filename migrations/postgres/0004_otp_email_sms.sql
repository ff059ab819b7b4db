-- sessiond schema (as migrations/sqlite/0004_otp_email_sms.sql): one-time codes by SMS and email.
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN phone TEXT;
ALTER TABLE users ADD COLUMN otp_email BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN otp_sms BOOLEAN NOT NULL DEFAULT FALSE;
