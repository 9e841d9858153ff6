//! `kubecast-load relay`: the least a tokio proxy can do — accept, connect,
//! `copy_bidirectional` — as the baseline kubecast's own relaying is
//! measured against. It runs as its own process so its memory is its own.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

/// Relays every connection to `listen` to `to` until killed. Prints
/// `listening on ADDR` on stdout once it accepts.
pub async fn run(listen: SocketAddr, to: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (mut client, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or similar: back off instead of spinning.
                eprintln!("relay: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let Ok(mut upstream) = TcpStream::connect(to).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}
