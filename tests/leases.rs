//! Leases (`es::store::Lease`): one holder at a time, on every store, also when the holders
//! are separate connections to one database racing for it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use es::store::{Lease, LeaseAttempt, LeaseLost, Leases};

/// A lease is one holder's at a time; releasing, expiring and taking over move it on under a
/// growing token; a holder that lost it learns so when it renews.
async fn one_holder_at_a_time<L: Leases + Clone>(a: L, b: L) {
    let ttl = Duration::from_millis(1000);
    let mut first = Lease::try_acquire(a.clone(), "job", "a", ttl).await.expect("a asks").expect("a gets a free lease");
    assert_eq!(first.grant().holder, "a");
    let token = first.grant().token;

    match b.acquire_lease("job", "b", ttl).await.expect("b asks") {
        LeaseAttempt::Held { holder, expires_in } => {
            assert_eq!(holder, "a");
            assert!(expires_in <= ttl, "{expires_in:?}");
        }
        LeaseAttempt::Granted(grant) => panic!("b got a lease a holds: {grant:?}"),
    }
    first.renew().await.expect("a renews its own lease");
    assert_eq!(first.grant().token, token, "a renewal keeps the token");

    // Released: b gets it at once, under a greater token, and a learns it lost it.
    first.release().await.expect("a releases");
    let second =
        Lease::try_acquire(b.clone(), "job", "b", ttl).await.expect("b asks").expect("b gets a released lease");
    assert!(second.grant().token > token, "{} after {token}", second.grant().token);
    let mut stale = Lease::try_acquire(a.clone(), "other", "a", Duration::from_secs(30))
        .await
        .expect("a asks")
        .expect("another lease");
    assert!(Lease::try_acquire(a.clone(), "job", "a", ttl).await.expect("a asks").is_none(), "b holds it now");

    // b stops renewing (it died): once expired, a takes it over under a greater token.
    let b_token = second.grant().token;
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    let mut taken = Lease::try_acquire(a.clone(), "job", "a", ttl).await.expect("a asks").expect("expired: a takes it");
    assert!(taken.grant().token > b_token);
    let mut second = second;
    match second.renew().await {
        Err(LeaseLost::TakenOver { holder, .. }) => assert_eq!(holder, "a"),
        other => panic!("b renewed a lease a took over: {other:?}"),
    }
    taken.renew().await.expect("a keeps it");
    stale.renew().await.expect("leases are independent by name");
}

/// A holder paused past its lease's expiry learns at its next renewal that the lease lapsed,
/// even though nobody took it in between, and the lease is given up.
async fn a_lease_renewed_too_late_has_lapsed<L: Leases + Clone>(store: L) {
    let ttl = Duration::from_millis(100);
    let mut lease = Lease::try_acquire(store.clone(), "lapse", "a", ttl).await.expect("ask").expect("free");
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert!(matches!(lease.renew().await, Err(LeaseLost::Lapsed { .. })), "a renewal after expiry is a lapse");
    let next = Lease::try_acquire(store, "lapse", "b", ttl).await.expect("ask").expect("given up after the lapse");
    assert!(next.grant().token > lease.grant().token);
}

/// `Lease::acquire` waits for a holder's release, and `keep` holds a lease for much longer
/// than its time to live.
async fn acquire_waits_and_keep_holds<L: Leases + Clone>(a: L, b: L) {
    // Long enough that a renewal answered slowly by a loaded server is still in time.
    let ttl = Duration::from_millis(1500);
    let mut held = Lease::acquire(a, "kept", "a", ttl).await.expect("a gets it");
    let waiter = tokio::spawn(async move {
        let lease = Lease::acquire(b, "kept", "b", ttl).await.expect("b gets it in the end");
        (Instant::now(), lease.grant().token)
    });
    let started = Instant::now();
    tokio::select! {
        lost = held.keep() => panic!("a lost a lease it kept renewing: {lost}"),
        () = tokio::time::sleep(ttl * 4) => {}
    }
    assert!(!waiter.is_finished(), "b got the lease while a kept it");
    let token = held.grant().token;
    held.release().await.expect("release");
    let (got_at, b_token) = waiter.await.expect("waiter");
    assert!(got_at.duration_since(started) >= ttl * 4);
    assert!(b_token > token);
}

/// Eight holders, each on its own connection, race for one lease forty times: the times they
/// held it never overlap, and the tokens grow in the order they held it.
async fn racing_holders_never_overlap<L: Leases + Clone>(holders: Vec<L>) {
    let ttl = Duration::from_secs(5);
    let held = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (n, store) in holders.into_iter().enumerate() {
        let held = Arc::clone(&held);
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let lease = Lease::acquire(store.clone(), "race", &format!("holder-{n}"), ttl).await.expect("acquire");
                let start = Instant::now();
                tokio::time::sleep(Duration::from_millis(3)).await;
                let end = Instant::now();
                let token = lease.grant().token;
                lease.release().await.expect("release");
                held.lock().expect("held").push((start, end, token));
            }
        }));
    }
    for task in tasks {
        task.await.expect("holder");
    }
    let mut held = held.lock().expect("held").clone();
    held.sort_by_key(|(start, _, _)| *start);
    assert_eq!(held.len(), 40);
    for pair in held.windows(2) {
        let ((_, end, token), (start, _, next)) = (pair[0], pair[1]);
        assert!(end <= start, "two holders held the lease at once");
        assert!(next > token, "token {next} after {token}");
    }
}

macro_rules! lease_checks {
    ($open:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn one_holder_at_a_time() {
            let stores = $open(2).await;
            super::one_holder_at_a_time(stores[0].clone(), stores[1].clone()).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_lease_renewed_too_late_has_lapsed() {
            super::a_lease_renewed_too_late_has_lapsed($open(1).await.remove(0)).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn acquire_waits_and_keep_holds() {
            let stores = $open(2).await;
            super::acquire_waits_and_keep_holds(stores[0].clone(), stores[1].clone()).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn racing_holders_never_overlap() {
            super::racing_holders_never_overlap($open(8).await).await;
        }
    };
}

mod memory {
    async fn open(count: usize) -> Vec<es::InMemoryStore> {
        vec![es::InMemoryStore::new(); count]
    }
    lease_checks!(open);
}

/// Each holder opens the file itself, as separate processes would.
mod sqlite {
    async fn open(count: usize) -> Vec<es::SqliteStore> {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let path = dir.join("leases.db");
        (0..count).map(|_| es::SqliteStore::open(&path).expect("open")).collect()
    }
    lease_checks!(open);
}

/// Each holder connects itself, as separate processes would; each test in a schema of its own.
#[cfg(feature = "postgres")]
mod postgres {
    async fn open(count: usize) -> Vec<es::PostgresStore> {
        let url = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => "postgres://postgres@127.0.0.1:5432/test".to_owned(),
        };
        let random = es::Uuid::new_v4().simple().to_string();
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let schema = format!("es_facade_leases_{secs:x}_{}", &random[..8]);
        let mut stores = Vec::new();
        for _ in 0..count {
            let options = es::PostgresOptions::new().schema(schema.clone()).max_connections(2);
            match es::PostgresStore::connect_with(&url, options).await {
                Ok(store) => stores.push(store),
                Err(error) => panic!("cannot open a PostgreSQL store at DATABASE_URL (is the server up?): {error}"),
            }
        }
        stores
    }
    lease_checks!(open);
}
