//! The connection pool and the store's own runtime. `Store` is a
//! synchronous trait, so `PgStore` runs tokio-postgres on a small runtime
//! of its own and its callers wait on a plain channel: a call blocks the
//! calling thread (the controller calls from blocking-task threads) and can
//! never panic for being made inside another runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls};

use crate::store::StoreError;

/// What a job returns: a future borrowing the connection it was given.
pub type BoxFut<'c, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

struct Pool {
    config: Config,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

/// A pooled connection, returned to the pool when dropped unless closed.
struct Pooled {
    client: Option<Client>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(client) = self.client.take().filter(|c| !c.is_closed()) {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(client);
        }
    }
}

impl Pool {
    async fn get(self: &Arc<Self>) -> Result<Pooled, StoreError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Config("connection pool closed".into()))?;
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            // Connections the server closed (a restart) are dropped here.
            idle.retain(|c| !c.is_closed());
            idle.pop()
        };
        let client = match reused {
            Some(c) => c,
            None => connect(&self.config).await?,
        };
        Ok(Pooled {
            client: Some(client),
            pool: self.clone(),
            _permit: permit,
        })
    }
}

/// Opens one connection and drives it on the current runtime.
pub async fn connect(config: &Config) -> Result<Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The store's runtime and pool.
pub struct Db {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pool: Arc<Pool>,
    config: Config,
}

impl Db {
    /// A pool of at most `size` connections to `config`'s database.
    pub fn new(config: Config, size: usize) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pg-store")
            .enable_all()
            .build()?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            pool: Arc::new(Pool {
                config: config.clone(),
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(size.max(1))),
            }),
            config,
        })
    }

    /// The connection settings (for the notification listener).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store's runtime.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Runs `job` with a pooled connection and waits for its result.
    pub fn run<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Client) -> BoxFut<'c, T> + Send + 'static,
    {
        let pool = self.pool.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let result = match pool.get().await {
                Ok(mut conn) => {
                    let client = conn.client.as_mut().expect("a pooled connection");
                    job(client).await
                }
                Err(e) => Err(e),
            };
            let _ = tx.send(result);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::Config("the store's runtime stopped".into())))
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Never blocks, so the last handle may be dropped anywhere,
        // including inside another runtime.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
