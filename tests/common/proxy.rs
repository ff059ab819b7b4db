//! A TCP proxy a test puts between sessiond and PostgreSQL, to take the database away and give it
//! back without touching the server that other tests share.

// Each test crate uses a part of this file, and its items are public to whichever crate includes it.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// What the proxy does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Forwards both ways.
    Up,
    /// Closes every connection, and each new one at once: a database that went away.
    Down,
    /// Forwards nothing and answers nothing, keeping connections open: a network partition, a
    /// blackhole that drops packets without a reset. When the link comes back, the connections it
    /// held are closed (their streams lost bytes).
    Silent,
}

/// The proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    link: watch::Sender<Link>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("the proxy binds");
        let addr = listener.local_addr().expect("its address");
        let (link, _) = watch::channel(Link::Up);
        let watcher = link.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream.clone(), watcher.subscribe()));
            }
        });
        Self { addr, link, accept }
    }

    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }

    /// `url` (a PostgreSQL URL) pointed at this proxy instead of its own host and port.
    pub fn url_through(&self, url: &str) -> String {
        let mut url = url::Url::parse(url).expect("a PostgreSQL URL");
        url.set_host(Some(&self.addr.ip().to_string())).expect("a host");
        url.set_port(Some(self.addr.port())).expect("a port");
        url.to_string()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.set(Link::Down);
    }
}

/// `host:port` of a PostgreSQL URL (5432 when it names no port).
pub fn upstream_of(url: &str) -> String {
    let url = url::Url::parse(url).expect("a PostgreSQL URL");
    format!("{}:{}", url.host_str().expect("a host"), url.port().unwrap_or(5432))
}

async fn relay(mut client: TcpStream, upstream: String, mut link: watch::Receiver<Link>) {
    let now = *link.borrow_and_update();
    match now {
        Link::Down => return,
        Link::Silent => {
            let _ = link.wait_for(|l| *l != Link::Silent).await;
            return;
        }
        Link::Up => {}
    }
    let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
    let silenced = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        changed = link.wait_for(|l| *l != Link::Up) => matches!(changed.map(|l| *l), Ok(Link::Silent)),
    };
    if silenced {
        let _ = link.wait_for(|l| *l != Link::Silent).await;
    }
    // Dropping both sockets closes them.
}
