//! Key-generation costs behind `kubepki init`: per-key RSA-2048 and ECDSA-P256 generation
//! (serial), one RSA-2048 / ECDSA signature, and batches of 16 keys generated in parallel on the
//! rayon pool exactly as kubepki's `init::execute` does (`par_iter().map(PrivateKey::generate)`).
use std::time::{Duration, Instant};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use rayon::prelude::*;

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let n = v.len() as f64;
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / n;
    let sd = (v.iter().map(|d| (ms(*d) - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    println!(
        "{name:<44} n={:<4} mean {mean:8.3} ms  sd {sd:7.3}  min {:8.3}  median {:8.3}  p90 {:8.3}  max {:8.3}",
        v.len(),
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[(v.len() * 9 / 10).min(v.len() - 1)]),
        ms(v[v.len() - 1]),
    );
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    let batches: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    // The first use of AWS-LC's RNG in a process seeds it (with CPU-jitter entropy unless
    // aws-lc-sys was built with AWS_LC_SYS_NO_JITTER_ENTROPY=1): a one-time cost every
    // `kubepki init` pays.
    let (first, _) = time(|| SystemRandom::new().fill(&mut [0u8; 32]).unwrap());
    let (second, _) = time(|| SystemRandom::new().fill(&mut [0u8; 32]).unwrap());
    println!(
        "first RNG use in the process (seeding)     {:8.3} ms   (second use: {:.3} ms)",
        first.as_secs_f64() * 1e3,
        second.as_secs_f64() * 1e3
    );
    // Rayon workers are separate threads: their first RNG use seeds a per-thread DRBG.
    let per_thread: Vec<Duration> = (0..rayon::current_num_threads())
        .into_par_iter()
        .map(|_| time(|| SystemRandom::new().fill(&mut [0u8; 32]).unwrap()).0)
        .collect();
    println!("first RNG use on each rayon thread          {:?}", per_thread);
    println!("rayon threads: {}", rayon::current_num_threads());

    let rsa: Vec<Duration> = (0..n)
        .map(|_| time(|| RsaKeyPair::generate(KeySize::Rsa2048).unwrap()).0)
        .collect();
    stats("RSA-2048 keygen, serial, per key", rsa);

    let ec: Vec<Duration> = (0..n.max(200))
        .map(|_| time(|| EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap()).0)
        .collect();
    stats("ECDSA-P256 keygen, serial, per key", ec);

    let rng = SystemRandom::new();
    let rk = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let msg = [7u8; 1000];
    let sigs: Vec<Duration> = (0..200)
        .map(|_| {
            let mut sig = vec![0u8; rk.public_modulus_len()];
            time(|| rk.sign(&signature::RSA_PKCS1_SHA256, &rng, &msg, &mut sig).unwrap()).0
        })
        .collect();
    stats("RSA-2048 PKCS#1 SHA-256 sign (1 KB TBS)", sigs);
    let ek = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let sigs: Vec<Duration> = (0..200).map(|_| time(|| ek.sign(&rng, &msg).unwrap()).0).collect();
    stats("ECDSA-P256 SHA-256 sign (1 KB TBS)", sigs);

    let par: Vec<Duration> = (0..batches)
        .map(|_| {
            time(|| {
                (0..16)
                    .into_par_iter()
                    .map(|_| RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
                    .collect::<Vec<_>>()
            })
            .0
        })
        .collect();
    stats("16 x RSA-2048 keygen, rayon par_iter (wall)", par);
    let par: Vec<Duration> = (0..batches.max(50))
        .map(|_| {
            time(|| {
                (0..16)
                    .into_par_iter()
                    .map(|_| EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap())
                    .collect::<Vec<_>>()
            })
            .0
        })
        .collect();
    stats("16 x ECDSA-P256 keygen, rayon par_iter (wall)", par);
}
