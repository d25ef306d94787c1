//! Property tests of the certs module's PEM splitting, inspection and bundle checks:
//! nothing panics on arbitrary input, valid PEMs split back to themselves, and any
//! reordering of a valid chain is reported.

use std::sync::OnceLock;

use istio_vault_wizard::certs::{
    BundleInput, Severity, check_bundle, inspect_items, inspect_pem, key_matches_cert, split_pem,
};
use proptest::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;

struct Fixture {
    /// [sub (pathlen 0), mid (unconstrained), root], each a PEM.
    chain: Vec<String>,
    ders: Vec<Vec<u8>>,
    sub_key: String,
}

fn ca(cn: &str, pathlen: Option<u8>) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Istio");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(match pathlen {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
    p.not_after = OffsetDateTime::now_utc() + time::Duration::days(365);
    p
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let (rk, mk, sk) = (
            KeyPair::generate_for(alg).unwrap(),
            KeyPair::generate_for(alg).unwrap(),
            KeyPair::generate_for(alg).unwrap(),
        );
        let rp = ca("Root CA", None);
        let root = rp.self_signed(&rk).unwrap();
        let mut mp = ca("Mid CA", None);
        mp.use_authority_key_identifier_extension = true;
        let mid = mp.signed_by(&mk, &Issuer::from_params(&rp, &rk)).unwrap();
        let mut sp = ca("Intermediate CA", Some(0));
        sp.use_authority_key_identifier_extension = true;
        let sub = sp.signed_by(&sk, &Issuer::from_params(&mp, &mk)).unwrap();
        Fixture {
            chain: vec![sub.pem(), mid.pem(), root.pem()],
            ders: vec![sub.der().to_vec(), mid.der().to_vec(), root.der().to_vec()],
            sub_key: sk.serialize_pem(),
        }
    })
}

fn check(key: &str, ca: &str, chain: &str, root: &str) -> Vec<istio_vault_wizard::certs::Finding> {
    check_bundle(
        &BundleInput {
            ca_key: Some(key),
            ca_cert: Some(ca),
            cert_chain: Some(chain),
            root_cert: Some(root),
        },
        OffsetDateTime::now_utc(),
    )
}

#[test]
fn fixture_chain_is_usable() {
    let f = fixture();
    let findings = check(&f.sub_key, &f.chain[0], &f.chain.concat(), &f.chain[2]);
    assert!(
        findings.iter().all(|x| x.severity != Severity::Error),
        "{findings:#?}"
    );
    assert!(key_matches_cert(&f.sub_key, &f.chain[0]).unwrap());
    assert!(!key_matches_cert(&f.sub_key, &f.chain[1]).unwrap());
}

/// Text made of PEM-ish fragments, to reach deeper than uniform random bytes.
fn pemish() -> impl Strategy<Value = String> {
    let f = fixture();
    let frag = prop_oneof![
        Just("-----BEGIN CERTIFICATE-----\n".to_string()),
        Just("-----END CERTIFICATE-----\n".to_string()),
        Just("-----BEGIN RSA PRIVATE KEY-----\n".to_string()),
        Just("-----END RSA PRIVATE KEY-----\n".to_string()),
        Just("-----BEGIN EC PRIVATE KEY-----\n".to_string()),
        Just("-----BEGIN PRIVATE KEY-----\n".to_string()),
        Just("-----END PRIVATE KEY-----\n".to_string()),
        Just("Proc-Type: 4,ENCRYPTED\n\n".to_string()),
        Just("MIIB".to_string()),
        Just("\n".to_string()),
        "[A-Za-z0-9+/=]{0,80}\n",
        ".{0,20}",
        Just(f.chain[0].clone()),
        Just(f.sub_key.clone()),
    ];
    proptest::collection::vec(frag, 0..12).prop_map(|v| v.concat())
}

/// A valid PEM with one character replaced, truncated, or duplicated.
fn mutated_pem() -> impl Strategy<Value = String> {
    let f = fixture();
    let all = f.chain.concat();
    let len = all.len();
    (0..len, 0..len, any::<u8>(), 0u8..3).prop_map(move |(i, j, b, how)| {
        let mut bytes = all.clone().into_bytes();
        match how {
            0 => bytes[i] = b,
            1 => bytes.truncate(i),
            _ => {
                let (a, c) = (i.min(j), i.max(j));
                let dup = bytes[a..c].to_vec();
                bytes.splice(a..a, dup);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = split_pem(&s);
        let _ = inspect_pem(&s);
        let _ = inspect_items(&s, OffsetDateTime::now_utc());
        let _ = key_matches_cert(&s, &s);
        let findings = check(&s, &s, &s, &s);
        prop_assert!(findings.iter().any(|f| f.severity == Severity::Error));
    }

    #[test]
    fn pemish_text_never_panics(s in pemish(), t in pemish()) {
        let f = fixture();
        let _ = split_pem(&s);
        let _ = inspect_pem(&s);
        let _ = inspect_items(&s, OffsetDateTime::now_utc());
        let _ = key_matches_cert(&s, &t);
        let _ = check(&s, &t, &s, &t);
        let _ = check(&f.sub_key, &s, &t, &f.chain[2]);
        let _ = check(&s, &f.chain[0], &f.chain.concat(), &t);
    }

    #[test]
    fn mutated_bundles_never_panic_and_changes_are_noticed(m in mutated_pem()) {
        let f = fixture();
        let findings = check(&f.sub_key, &f.chain[0], &m, &f.chain[2]);
        let _ = inspect_items(&m, OffsetDateTime::now_utc());
        // If the certificates read back identical, the verdict must be the same as for
        // the original; otherwise an error must be reported.
        let blocks = split_pem(&m);
        let all_ok = blocks.iter().all(|b| b.der.is_ok() && b.is_certificate());
        let ders: Vec<Vec<u8>> = blocks.into_iter().filter_map(|b| b.der.ok()).collect();
        let usable = findings.iter().all(|x| x.severity != Severity::Error);
        let has = |code: &str| findings.iter().any(|x| x.code == code);
        if all_ok && ders == f.ders {
            prop_assert!(usable, "{:#?}", findings);
        } else if all_ok && ders == f.ders[..2] {
            // Cut exactly after the intermediate: the root is omitted, which is a warning.
            prop_assert!(usable && has("chain-omits-root"), "{:#?}", findings);
        } else if usable {
            // Only a whole duplicated certificate is harmless, and it is reported.
            prop_assert!(has("duplicate-certificate"), "mutated chain accepted: {:#?}", findings);
        } else {
            prop_assert!(!usable, "mutated chain accepted: {:#?}", findings);
        }
    }

    #[test]
    fn concatenated_pems_split_back(
        picks in proptest::collection::vec(0usize..3, 0..8),
        junk in proptest::collection::vec("[a-zA-Z0-9 :.]{0,30}\n", 8),
        crlf in any::<bool>(),
    ) {
        let f = fixture();
        let mut text = String::new();
        for (n, i) in picks.iter().enumerate() {
            text += &junk[n];
            text += &f.chain[*i];
        }
        if crlf {
            text = text.replace('\n', "\r\n");
        }
        let blocks = split_pem(&text);
        let got: Vec<Vec<u8>> = blocks.into_iter().map(|b| b.der.unwrap()).collect();
        let want: Vec<Vec<u8>> = picks.iter().map(|i| f.ders[*i].clone()).collect();
        prop_assert_eq!(&got, &want);
        if !picks.is_empty() {
            let infos = inspect_pem(&text).unwrap();
            prop_assert_eq!(infos.len(), picks.len());
        }
    }

    #[test]
    fn reordered_chains_are_reported(order in Just(vec![0usize, 1, 2]).prop_shuffle(),
                                     drop_one in proptest::option::of(0usize..3)) {
        let f = fixture();
        let mut order = order;
        if let Some(d) = drop_one {
            order.remove(d);
        }
        let chain: String = order.iter().map(|i| f.chain[*i].as_str()).collect();
        let findings = check(&f.sub_key, &f.chain[0], &chain, &f.chain[2]);
        let usable = findings.iter().all(|x| x.severity != Severity::Error);
        if order == [0, 1, 2] {
            prop_assert!(usable, "{:#?}", findings);
        } else if order == [0, 1] {
            // Root omitted but the chain reaches it: a warning only.
            prop_assert!(usable);
            prop_assert!(findings.iter().any(|x| x.code == "chain-omits-root"));
        } else {
            prop_assert!(!usable, "order {:?} accepted: {:#?}", order, findings);
            prop_assert!(findings.iter().any(|x| matches!(x.code,
                "chain-does-not-start-with-ca-cert" | "chain-signature-invalid"
                | "chain-does-not-reach-root" | "root-cert-mismatch")), "{:#?}", findings);
        }
    }
}
