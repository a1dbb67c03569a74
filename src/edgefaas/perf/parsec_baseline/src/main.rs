//! parsec-baseline: the same request loop as edgefaas.perf.parsec (Python), made with the
//! official Rust BasicClient, so the Python client has a reference to be compared with.
//!
//!     parsec-baseline <ping|ecc-sign|rsa-encrypt> <clients> [--duration SECS | --count N]
//!
//! The service is found through $PARSEC_SERVICE_ENDPOINT, as for any Parsec client.
//! Prints one JSON object on stdout: op, clients, elapsed_s (wall time of the timed
//! loop), errors, and latencies_us (every request's latency, all threads together).

use parsec_client::core::interface::operations::psa_algorithm::{
    AsymmetricEncryption, AsymmetricSignature, Hash,
};
use parsec_client::core::interface::operations::psa_key_attributes::{
    Attributes, EccFamily, Lifetime, Policy, Type, UsageFlags,
};
use parsec_client::BasicClient;
use std::process::exit;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Ping,
    EccSign,
    RsaEncrypt,
}

#[derive(Clone, Copy)]
enum Stop {
    After(Duration),
    Count(usize),
}

fn usage() -> ! {
    eprintln!("usage: parsec-baseline <ping|ecc-sign|rsa-encrypt> <clients> [--duration SECS | --count N]");
    exit(2)
}

fn ecdsa() -> AsymmetricSignature {
    AsymmetricSignature::Ecdsa { hash_alg: Hash::Sha256.into() }
}

/// Attributes equal to the Python client's ecc_sign_key_attributes / rsa_encrypt_key_attributes,
/// so that both clients ask the service for the same work.
fn key_attributes(op: Op) -> Attributes {
    let mut usage_flags = UsageFlags::default();
    let (key_type, bits, permitted_algorithms) = if op == Op::EccSign {
        usage_flags.set_sign_hash().set_verify_hash().set_sign_message().set_verify_message();
        (Type::EccKeyPair { curve_family: EccFamily::SecpR1 }, 256, ecdsa().into())
    } else {
        usage_flags.set_encrypt().set_decrypt();
        (Type::RsaKeyPair, 2048, AsymmetricEncryption::RsaPkcs1v15Crypt.into())
    };
    Attributes {
        lifetime: Lifetime::Persistent,
        key_type,
        bits,
        policy: Policy { usage_flags, permitted_algorithms },
    }
}

fn new_client() -> BasicClient {
    // BasicClient::new asks the service for its authenticator and default provider, so
    // this is also the per-thread discovery, done before the clock starts.
    BasicClient::new(Some("parsec-baseline".to_string())).unwrap_or_else(|e| {
        eprintln!("cannot create a Parsec client: {e}");
        exit(1)
    })
}

fn one_request(client: &BasicClient, op: Op, key: &str) -> bool {
    let digest = [0x5au8; 32]; // any 32 bytes are a valid SHA-256 digest to sign
    match op {
        Op::Ping => client.ping().map(|_| ()),
        Op::EccSign => client.psa_sign_hash(key, &digest, ecdsa()).map(|_| ()),
        Op::RsaEncrypt => client
            .psa_asymmetric_encrypt(key, AsymmetricEncryption::RsaPkcs1v15Crypt, b"parsec bench payload", None)
            .map(|_| ()),
    }
    .is_ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        usage()
    }
    let op = match args[1].as_str() {
        "ping" => Op::Ping,
        "ecc-sign" => Op::EccSign,
        "rsa-encrypt" => Op::RsaEncrypt,
        _ => usage(),
    };
    let clients: usize = args[2].parse().unwrap_or_else(|_| usage());
    let stop = match (args.get(3).map(String::as_str), args.get(4).and_then(|v| v.parse::<f64>().ok())) {
        (None, _) => Stop::After(Duration::from_secs(5)),
        (Some("--duration"), Some(s)) => Stop::After(Duration::from_secs_f64(s)),
        (Some("--count"), Some(n)) => Stop::Count(n as usize),
        _ => usage(),
    };

    // The pid keeps the key name apart from keys of other runs sharing this uid.
    let key = Arc::new(format!("parsec-baseline-{}", std::process::id()));
    let setup = new_client();
    if op != Op::Ping {
        if let Err(e) = setup.psa_generate_key(&key, key_attributes(op)) {
            eprintln!("cannot generate key {key}: {e}");
            exit(1)
        }
    }

    // Every thread makes its client and one untimed request, then all start together.
    let barrier = Arc::new(Barrier::new(clients + 1));
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (barrier, key) = (barrier.clone(), key.clone());
            thread::spawn(move || {
                let client = new_client();
                let warm = one_request(&client, op, &key);
                barrier.wait();
                let started = Instant::now();
                let (mut latencies, mut errors) = (Vec::new(), usize::from(!warm));
                loop {
                    match stop {
                        Stop::After(d) if started.elapsed() >= d => break,
                        Stop::Count(n) if latencies.len() + errors >= n => break,
                        _ => {}
                    }
                    let t = Instant::now();
                    if one_request(&client, op, &key) {
                        latencies.push(t.elapsed().as_secs_f64() * 1e6);
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (l, e) = worker.join().expect("worker thread panicked");
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();

    if op != Op::Ping {
        if let Err(e) = setup.psa_destroy_key(&key) {
            eprintln!("cannot destroy key {key}: {e}");
            errors += 1;
        }
    }
    let joined: Vec<String> = latencies.iter().map(|l| format!("{l:.1}")).collect();
    let name = ["ping", "ecc-sign", "rsa-encrypt"][op as usize];
    println!(
        "{{\"op\":\"{name}\",\"clients\":{clients},\"elapsed_s\":{elapsed:.4},\"errors\":{errors},\"latencies_us\":[{}]}}",
        joined.join(",")
    );
}
