//! PLAIN and SCRAM exchanges against a real (in-memory SQLite) store, with a client
//! side of SCRAM written here from the RFC, and RFC 7677's published exchange.

use super::*;
use shoal_meta::SqliteStore;

async fn store_with(creds: &[ScramCredential]) -> SqliteStore {
    let s = SqliteStore::in_memory().unwrap();
    s.alter_scram_credentials(creds, &[]).await.unwrap();
    s
}

fn alice(m: ScramMechanism) -> ScramCredential {
    scram::credential("alice", m, "alice-secret", b"some salt", 4096)
}

/// The client's side of SCRAM (RFC 5802 section 3), as a Kafka client computes it.
struct Client {
    m: ScramMechanism,
    gs2: String,
    first_bare: String,
    nonce: String,
}

impl Client {
    fn first(m: ScramMechanism, user: &str, authzid: &str, extra: &str) -> (Client, Vec<u8>) {
        let esc = |s: &str| s.replace('=', "=3D").replace(',', "=2C");
        let gs2 = if authzid.is_empty() {
            "n,,".to_string()
        } else {
            format!("n,a={},", esc(authzid))
        };
        let nonce = "fyko+d2lbbFgONRv9qkxdawL".to_string();
        let first_bare = format!("n={},r={nonce}{extra}", esc(user));
        let token = format!("{gs2}{first_bare}").into_bytes();
        (
            Client {
                m,
                gs2,
                first_bare,
                nonce,
            },
            token,
        )
    }

    /// The client-final message for `server_first`, and the server signature to expect.
    fn finish(&self, server_first: &[u8], password: &str) -> (Vec<u8>, String) {
        let server_first = std::str::from_utf8(server_first).unwrap();
        let attr = |k: &str| {
            server_first
                .split(',')
                .find_map(|a| a.strip_prefix(k))
                .unwrap()
                .to_string()
        };
        let (nonce, salt, iterations) = (attr("r="), attr("s="), attr("i="));
        assert!(nonce.starts_with(&self.nonce) && nonce.len() > self.nonce.len());
        let salt = B64.decode(salt).unwrap();
        let salted = scram::salted_password(
            self.m,
            password.as_bytes(),
            &salt,
            iterations.parse().unwrap(),
        );
        let without_proof = format!("c={},r={nonce}", B64.encode(&self.gs2));
        let auth = format!("{},{server_first},{without_proof}", self.first_bare);
        let client_key = scram::hmac(self.m, &salted, b"Client Key");
        let signature = scram::hmac(self.m, &scram::hash(self.m, &client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_sig = scram::hmac(self.m, &scram::server_key(self.m, &salted), auth.as_bytes());
        (
            format!("{without_proof},p={}", B64.encode(proof)).into_bytes(),
            format!("v={}", B64.encode(server_sig)),
        )
    }
}

/// Runs a whole SCRAM exchange for `user` with `password`.
async fn scram_login(
    store: &SqliteStore,
    mechanism: Mechanism,
    user: &str,
    password: &str,
) -> Result<String, SaslError> {
    let m = mechanism.scram().unwrap();
    let mut server = SaslServer::new(mechanism);
    let (client, first) = Client::first(m, user, "", "");
    let Step::Continue(server_first) = server.step(&first, store).await? else {
        panic!("SCRAM needs a second round");
    };
    let (last, expected) = client.finish(&server_first, password);
    match server.step(&last, store).await? {
        Step::Done { response, user } => {
            assert_eq!(String::from_utf8(response).unwrap(), expected);
            Ok(user)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn rfc7677_exchange() {
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let cred = scram::credential("user", ScramMechanism::Sha256, "pencil", &salt, 4096);
    let store = store_with(&[cred]).await;
    let mut server =
        SaslServer::with_server_nonce(Mechanism::ScramSha256, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
    let first = server
        .step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", &store)
        .await
        .unwrap();
    assert_eq!(
        first,
        Step::Continue(
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                .to_vec()
        )
    );
    let last = server
        .step(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            &store,
        )
        .await
        .unwrap();
    assert_eq!(
        last,
        Step::Done {
            response: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec(),
            user: "user".into()
        }
    );
    let again = server.step(b"c=biws", &store).await;
    assert!(matches!(again, Err(SaslError::Illegal(_))), "{again:?}");
}

#[tokio::test]
async fn scram_both_mechanisms_end_to_end() {
    let store = store_with(&[alice(ScramMechanism::Sha256), alice(ScramMechanism::Sha512)]).await;
    for mechanism in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
        let user = scram_login(&store, mechanism, "alice", "alice-secret").await;
        assert_eq!(user.unwrap(), "alice", "{mechanism}");
    }
}

#[tokio::test]
async fn scram_wrong_password_and_unknown_user_fail_alike() {
    let store = store_with(&[alice(ScramMechanism::Sha256)]).await;
    let wrong = scram_login(&store, Mechanism::ScramSha256, "alice", "guess")
        .await
        .unwrap_err();
    let unknown = scram_login(&store, Mechanism::ScramSha256, "mallory", "guess")
        .await
        .unwrap_err();
    // alice has no SHA-512 credential: to SCRAM-SHA-512 she is unknown.
    let other_mech = scram_login(&store, Mechanism::ScramSha512, "alice", "alice-secret")
        .await
        .unwrap_err();
    assert!(matches!(wrong, SaslError::AuthenticationFailed(_)));
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert!(matches!(other_mech, SaslError::AuthenticationFailed(_)));
    assert_eq!(
        wrong.to_string(),
        "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256"
    );
}

#[tokio::test]
async fn unknown_users_get_a_stable_plausible_salt() {
    let store = store_with(&[]).await;
    let salt_of = |reply: Step| {
        let Step::Continue(t) = reply else {
            panic!("{reply:?}")
        };
        let t = String::from_utf8(t).unwrap();
        t.split(',')
            .find_map(|a| a.strip_prefix("s="))
            .unwrap()
            .to_string()
    };
    let mut salts = Vec::new();
    for user in ["nobody", "nobody", "someone"] {
        let mut server = SaslServer::new(Mechanism::ScramSha512);
        let (_, first) = Client::first(ScramMechanism::Sha512, user, "", "");
        salts.push(salt_of(server.step(&first, &store).await.unwrap()));
    }
    assert_eq!(salts[0], salts[1], "asking twice shows the same salt");
    assert_ne!(salts[0], salts[2]);
    assert_eq!(B64.decode(&salts[0]).unwrap().len(), scram::SALT_LEN);
}

#[tokio::test]
async fn scram_names_authzid_and_extensions() {
    let odd = scram::credential("a,b=c", ScramMechanism::Sha256, "pw", b"salt", 4096);
    let store = store_with(&[alice(ScramMechanism::Sha256), odd]).await;
    // Escaped names decode; an authzid equal to the user and unknown extensions are fine.
    let user = scram_login(&store, Mechanism::ScramSha256, "a,b=c", "pw").await;
    assert_eq!(user.unwrap(), "a,b=c");
    let mut server = SaslServer::new(Mechanism::ScramSha256);
    let (client, first) = Client::first(ScramMechanism::Sha256, "alice", "alice", ",foo=bar");
    let Step::Continue(sf) = server.step(&first, &store).await.unwrap() else {
        panic!()
    };
    let (last, _) = client.finish(&sf, "alice-secret");
    assert!(matches!(
        server.step(&last, &store).await.unwrap(),
        Step::Done { .. }
    ));
    // Another authzid, delegation tokens: refused before any credential is looked at.
    for (authzid, extra) in [("bob", ""), ("", ",tokenauth=true")] {
        let mut server = SaslServer::new(Mechanism::ScramSha256);
        let (_, first) = Client::first(ScramMechanism::Sha256, "alice", authzid, extra);
        let r = server.step(&first, &store).await;
        assert!(
            matches!(r, Err(SaslError::Illegal(_))),
            "{authzid} {extra}: {r:?}"
        );
    }
}

#[tokio::test]
async fn scram_final_message_is_checked() {
    let store = store_with(&[alice(ScramMechanism::Sha256)]).await;
    let tamper: [fn(&str) -> String; 5] = [
        // Another nonce.
        |m| m.replacen(",r=fyko", ",r=fyk0", 1),
        // Channel binding of another header.
        |m| m.replacen("c=biws", "c=eSws", 1),
        // No proof.
        |m| m.split(",p=").next().unwrap().to_string(),
        // Proof not base64.
        |m| format!("{},p=!!", m.split(",p=").next().unwrap()),
        // An extension changes the AuthMessage, so the proof no longer fits.
        |m| m.replacen(",p=", ",x=1,p=", 1),
    ];
    for (i, f) in tamper.iter().enumerate() {
        let mut server = SaslServer::new(Mechanism::ScramSha256);
        let (client, first) = Client::first(ScramMechanism::Sha256, "alice", "", "");
        let Step::Continue(sf) = server.step(&first, &store).await.unwrap() else {
            panic!()
        };
        let (last, _) = client.finish(&sf, "alice-secret");
        let last = f(std::str::from_utf8(&last).unwrap());
        let r = server.step(last.as_bytes(), &store).await;
        let want_auth_failure = i == 4;
        match r {
            Err(SaslError::AuthenticationFailed(_)) if want_auth_failure => {}
            Err(SaslError::Illegal(_)) if !want_auth_failure => {}
            other => panic!("case {i}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn malformed_client_first_messages_are_refused() {
    let store = store_with(&[alice(ScramMechanism::Sha256)]).await;
    let long = format!("n,,n=alice,r={}", "x".repeat(MAX_TOKEN_BYTES));
    let cases: Vec<&[u8]> = vec![
        b"",
        b"n",
        b"n,",
        b"x,,n=alice,r=abc",
        b"p=tls-unique,,n=alice,r=abc",
        b"y,,n=alice,r=abc",
        b"n,,m=ext,n=alice,r=abc",
        b"n,,n=alice",
        b"n,,n=alice,r=",
        b"n,,n=alice,r=a b",
        b"n,,n=,r=abc",
        b"n,,n=al=ice,r=abc",
        b"n,,n=alice=2,r=abc",
        b"n,,r=abc,n=alice",
        b"n,x,n=alice,r=abc",
        b"n,,n=alice,r=abc,noequals",
        b"n,,n=\xff,r=abc",
        long.as_bytes(),
    ];
    for token in cases {
        let mut server = SaslServer::new(Mechanism::ScramSha256);
        let r = server.step(token, &store).await;
        assert!(
            matches!(r, Err(SaslError::Illegal(_))),
            "{:?}: {r:?}",
            String::from_utf8_lossy(token)
        );
        let after = server.step(b"n,,n=alice,r=abc", &store).await;
        assert!(
            matches!(after, Err(SaslError::Illegal(_))),
            "a failed exchange is over"
        );
    }
}

#[tokio::test]
async fn plain_checks_the_scram_credential() {
    // bob only has SHA-512, alice only SHA-256: PLAIN uses whichever there is.
    let bob = scram::credential("bob", ScramMechanism::Sha512, "bob-pw", b"pepper", 8192);
    let store = store_with(&[alice(ScramMechanism::Sha256), bob]).await;
    let login = |token: &'static [u8]| {
        let store = &store;
        async move { SaslServer::new(Mechanism::Plain).step(token, store).await }
    };
    for (token, user) in [
        (&b"\0alice\0alice-secret"[..], "alice"),
        (b"alice\0alice\0alice-secret", "alice"),
        (b"\0bob\0bob-pw", "bob"),
    ] {
        assert_eq!(
            login(token).await.unwrap(),
            Step::Done {
                response: Vec::new(),
                user: user.into()
            }
        );
    }
    let wrong = login(b"\0alice\0alice-secreT").await.unwrap_err();
    let unknown = login(b"\0carol\0alice-secret").await.unwrap_err();
    assert!(matches!(
        wrong,
        SaslError::AuthenticationFailed(Mechanism::Plain)
    ));
    assert_eq!(wrong.to_string(), unknown.to_string());
    for bad in [
        &b""[..],
        b"alice",
        b"\0alice",
        b"\0\0pw",
        b"\0alice\0",
        b"bob\0alice\0alice-secret",
        b"\0alice\0alice-secret\0",
        b"\0al\xffice\0pw",
    ] {
        let r = login(bad).await;
        assert!(
            matches!(r, Err(SaslError::Illegal(_))),
            "{:?}: {r:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let mut server = SaslServer::new(Mechanism::Plain);
    server.step(b"\0alice\0alice-secret", &store).await.unwrap();
    let again = server.step(b"\0alice\0alice-secret", &store).await;
    assert!(
        matches!(again, Err(SaslError::Illegal(_))),
        "one exchange, one login"
    );
}

#[test]
fn mechanism_names() {
    for m in Mechanism::ALL {
        assert_eq!(Mechanism::from_name(m.name()), Some(m));
    }
    assert_eq!(Mechanism::from_name("plain"), None);
    assert_eq!(Mechanism::from_name("GSSAPI"), None);
    assert_eq!(Mechanism::Plain.scram(), None);
}
