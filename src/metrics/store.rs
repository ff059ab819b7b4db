//! The store, timed: a decorator over the port that observes each operation's latency under its
//! static name, so that neither backend knows about metrics.

use std::{future::Future, sync::Arc, time::Instant};

use async_trait::async_trait;
use prometheus_client::{encoding::EncodeLabelSet, metrics::family::Family, metrics::histogram::Histogram};

use crate::domain::{
    Error, Timestamp,
    keyring::SealedSecret,
    otp::OtpMethod,
    passkey::{PasskeyRecord, PasskeyStore, PendingRegistration},
    port::{
        AuthorizedTermination, SessionBuild, SessionFilter, Store, StoreResult, StoreStats, Termination,
        TerminationCheck, TokenRow,
    },
    secrets::{ClearTotpSecret, KeyCheck},
    session::{HistoryEntry, Session, UserCheck},
    user::{ApiTokenRecord, Claim, LockoutCounter, TokenHolder, TotpEnrolment, User, UserState},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OperationLabels {
    operation: &'static str,
}

/// `inner`, each operation timed into `sessiond_store_operation_duration_seconds{operation}`.
#[derive(Debug)]
pub struct TimedStore {
    inner: Arc<dyn Store>,
    durations: Family<OperationLabels, Histogram, fn() -> Histogram>,
}

impl TimedStore {
    /// `store` timed into `metrics`.
    pub fn new(store: Arc<dyn Store>, metrics: &super::Metrics) -> Self {
        Self { inner: store, durations: metrics.store_operations.clone() }
    }

    async fn timed<T>(&self, operation: &'static str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let answer = call.await;
        self.durations.get_or_create(&OperationLabels { operation }).observe(started.elapsed().as_secs_f64());
        answer
    }
}

#[async_trait]
impl Store for TimedStore {
    async fn ping(&self) -> StoreResult<()> {
        self.timed("ping", self.inner.ping()).await
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
    async fn insert_user(&self, user: &User) -> StoreResult<()> {
        self.timed("insert_user", self.inner.insert_user(user)).await
    }
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        self.timed("user_by_id", self.inner.user_by_id(id)).await
    }
    async fn user_by_login_name(&self, login_name: &str) -> StoreResult<Option<User>> {
        self.timed("user_by_login_name", self.inner.user_by_login_name(login_name)).await
    }
    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.timed("list_users", self.inner.list_users()).await
    }
    async fn set_user_state(&self, id: &str, state: UserState) -> StoreResult<bool> {
        self.timed("set_user_state", self.inner.set_user_state(id, state)).await
    }
    async fn set_password_hash(&self, id: &str, hash: &str) -> StoreResult<bool> {
        self.timed("set_password_hash", self.inner.set_password_hash(id, hash)).await
    }
    async fn unlock_user(&self, id: &str) -> StoreResult<bool> {
        self.timed("unlock_user", self.inner.unlock_user(id)).await
    }
    async fn set_totp(&self, id: &str, enrolment: &TotpEnrolment) -> StoreResult<bool> {
        self.timed("set_totp", self.inner.set_totp(id, enrolment)).await
    }
    async fn set_contact(&self, id: &str, method: OtpMethod, value: Option<&str>) -> StoreResult<bool> {
        self.timed("set_contact", self.inner.set_contact(id, method, value)).await
    }
    async fn enable_otp(&self, id: &str, method: OtpMethod) -> StoreResult<bool> {
        self.timed("enable_otp", self.inner.enable_otp(id, method)).await
    }
    async fn claim_attempt(&self, user_id: &str, counter: LockoutCounter, max: i32) -> StoreResult<Option<Claim>> {
        self.timed("claim_attempt", self.inner.claim_attempt(user_id, counter, max)).await
    }
    async fn clear_attempts(&self, user_id: &str, counter: LockoutCounter) -> StoreResult<()> {
        self.timed("clear_attempts", self.inner.clear_attempts(user_id, counter)).await
    }
    async fn consume_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        self.timed("consume_totp_step", self.inner.consume_totp_step(user_id, step)).await
    }
    async fn key_checks(&self) -> StoreResult<Vec<KeyCheck>> {
        self.timed("key_checks", self.inner.key_checks()).await
    }
    async fn insert_key_check(&self, check: &KeyCheck) -> StoreResult<()> {
        self.timed("insert_key_check", self.inner.insert_key_check(check)).await
    }
    async fn remove_key_check(&self, key_id: &str) -> StoreResult<bool> {
        self.timed("remove_key_check", self.inner.remove_key_check(key_id)).await
    }
    async fn clear_totp_secrets(&self) -> StoreResult<Vec<ClearTotpSecret>> {
        self.timed("clear_totp_secrets", self.inner.clear_totp_secrets()).await
    }
    async fn seal_clear_totp_secret(&self, user_id: &str, clear: &[u8], sealed: &SealedSecret) -> StoreResult<bool> {
        self.timed("seal_clear_totp_secret", self.inner.seal_clear_totp_secret(user_id, clear, sealed)).await
    }
    async fn reseal_totp_secret(&self, user_id: &str, old: &SealedSecret, new: &SealedSecret) -> StoreResult<bool> {
        self.timed("reseal_totp_secret", self.inner.reseal_totp_secret(user_id, old, new)).await
    }
    async fn insert_api_token(&self, token: &ApiTokenRecord) -> StoreResult<()> {
        self.timed("insert_api_token", self.inner.insert_api_token(token)).await
    }
    async fn api_token(&self, id: &str) -> StoreResult<Option<(ApiTokenRecord, TokenHolder)>> {
        self.timed("api_token", self.inner.api_token(id)).await
    }
    async fn list_api_tokens(&self, user_id: Option<&str>) -> StoreResult<Vec<ApiTokenRecord>> {
        self.timed("list_api_tokens", self.inner.list_api_tokens(user_id)).await
    }
    async fn revoke_api_token(&self, id: &str, at: Timestamp) -> StoreResult<bool> {
        self.timed("revoke_api_token", self.inner.revoke_api_token(id, at)).await
    }
    async fn session(&self, id: &str) -> StoreResult<Option<Session>> {
        self.timed("session", self.inner.session(id)).await
    }
    async fn create_session(&self, session: &Session, entry: &HistoryEntry) -> StoreResult<()> {
        self.timed("create_session", self.inner.create_session(session, entry)).await
    }
    async fn update_session(&self, current: &Session, next: &Session, entry: &HistoryEntry) -> StoreResult<()> {
        self.timed("update_session", self.inner.update_session(current, next, entry)).await
    }
    async fn terminate_session(
        &self,
        id: &str,
        at: Timestamp,
        actor: &str,
        check: TerminationCheck,
    ) -> StoreResult<Termination> {
        self.timed("terminate_session", self.inner.terminate_session(id, at, actor, check)).await
    }
    async fn token_and_session(&self, token_id: &str, id: &str) -> StoreResult<(TokenRow, Option<Session>)> {
        self.timed("token_and_session", self.inner.token_and_session(token_id, id)).await
    }
    async fn terminate_session_as(
        &self,
        token_id: &str,
        id: &str,
        at: Timestamp,
        decide: AuthorizedTermination,
    ) -> StoreResult<Termination> {
        self.timed("terminate_session_as", self.inner.terminate_session_as(token_id, id, at, decide)).await
    }
    async fn create_session_as(
        &self,
        token_id: &str,
        user: Option<&UserCheck>,
        at: Timestamp,
        build: SessionBuild,
    ) -> StoreResult<Result<Session, Error>> {
        self.timed("create_session_as", self.inner.create_session_as(token_id, user, at, build)).await
    }
    async fn list_sessions(&self, filter: &SessionFilter) -> StoreResult<(u64, Vec<Session>)> {
        self.timed("list_sessions", self.inner.list_sessions(filter)).await
    }
    async fn session_history(&self, id: &str) -> StoreResult<Vec<HistoryEntry>> {
        self.timed("session_history", self.inner.session_history(id)).await
    }
    async fn sweep(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        self.timed("sweep", self.inner.sweep(before, limit)).await
    }
    async fn sweep_history(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        self.timed("sweep_history", self.inner.sweep_history(before, limit)).await
    }
    async fn close(&self) {
        self.inner.close().await;
    }
}

#[async_trait]
impl PasskeyStore for TimedStore {
    async fn insert_passkey_registration(
        &self,
        pending: &PendingRegistration,
        now: Timestamp,
        keep: u32,
    ) -> StoreResult<()> {
        self.timed("insert_passkey_registration", self.inner.insert_passkey_registration(pending, now, keep)).await
    }
    async fn take_passkey_registration(
        &self,
        user_id: &str,
        passkey_id: &str,
    ) -> StoreResult<Option<PendingRegistration>> {
        self.timed("take_passkey_registration", self.inner.take_passkey_registration(user_id, passkey_id)).await
    }
    async fn insert_passkey(&self, passkey: &PasskeyRecord) -> StoreResult<()> {
        self.timed("insert_passkey", self.inner.insert_passkey(passkey)).await
    }
    async fn passkeys_of_user(&self, user_id: &str) -> StoreResult<Vec<PasskeyRecord>> {
        self.timed("passkeys_of_user", self.inner.passkeys_of_user(user_id)).await
    }
    async fn passkey_by_credential(&self, credential_id: &str) -> StoreResult<Option<PasskeyRecord>> {
        self.timed("passkey_by_credential", self.inner.passkey_by_credential(credential_id)).await
    }
    async fn record_passkey_use(
        &self,
        credential_id: &str,
        seen_counter: i64,
        counter: i64,
        credential: &str,
    ) -> StoreResult<bool> {
        self.timed(
            "record_passkey_use",
            self.inner.record_passkey_use(credential_id, seen_counter, counter, credential),
        )
        .await
    }
    async fn remove_passkey(&self, user_id: &str, passkey_id: &str) -> StoreResult<bool> {
        self.timed("remove_passkey", self.inner.remove_passkey(user_id, passkey_id)).await
    }
}
