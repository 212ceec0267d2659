//! Auto-enrollment with the shared secret: the settings and the decision whether a named worker
//! presenting the (already verified) secret may enroll.
