//! A store test written once as a function over `Arc<dyn Store>`, run on every backend:
//! `on_every_store!(a, b, ...)` makes `sqlite::a` and `postgres::a` (the latter passes without
//! running unless `SESSIOND_TEST_POSTGRES` is set; each test gets a schema of its own). A test file
//! includes `common/backend.rs` as `backend` and this file as `stores` (`#[macro_use]`).

use std::{future::Future, sync::Arc};

use sessiond::store::{self, Durability, Store};

use super::backend::{Backend, TestDb};

/// Opens a fresh store for `backend`, runs `test` on it, closes it. Returns early (passes) when
/// the backend is not configured here.
pub(crate) async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = TestDb::fresh(backend).await else { return };
    let store = store::open(&db.url, Durability::Normal).await.expect("the test store opens");
    test(Arc::clone(&store)).await;
    store.close().await;
    db.remove().await;
}

macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::stores::run(super::backend::Backend::Sqlite, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::stores::run(super::backend::Backend::Postgres, super::$name).await;
                }
            )*
        }
    };
}
