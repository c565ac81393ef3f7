//! Who the Azure sink is: the account, its blob endpoint and its credential, resolved from the
//! workload, `AZURE_STORAGE_CONNECTION_STRING`, or `AZURE_STORAGE_ACCOUNT` with a key or SAS; and an
//! account key turned into an account SAS (the SDK has no shared-key credential, and Azurite listens
//! on http, where the SDK refuses Entra ID tokens).

use super::{AzureOptions, DEV_ACCOUNT, DEV_ENDPOINT, DEV_KEY};
use crate::error::{Error, Result};
use azure_core::http::Url;
use azure_core::time::{Duration as AzDuration, OffsetDateTime};
use base64::Engine as _;

/// How requests are authorised.
#[derive(Clone)]
pub enum Credential {
    /// The account's shared key (base64), signed into an account SAS.
    Key(String),
    /// A SAS token (the query string, with or without its leading `?`).
    Sas(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach logs or error messages.
        f.write_str(match self {
            Credential::Key(_) => "Key(…)",
            Credential::Sas(_) => "Sas(…)",
        })
    }
}

/// An account resolved from the options and the environment.
#[derive(Debug, PartialEq)]
pub(super) struct Account {
    pub(super) name: String,
    /// The blob service URL, without a trailing `/`.
    pub(super) endpoint: String,
    /// The SAS query every request carries (generated from a key, or given).
    pub(super) sas: String,
}

/// The `Key=Value;…` pairs of a connection string (keys case-insensitive).
fn parse_connection_string(s: &str) -> Vec<(String, String)> {
    s.split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// Finds the account, endpoint and credential: the workload's keys first, then the connection
/// string (when it is for the same account), then `AZURE_STORAGE_ACCOUNT` / `_KEY` / `_SAS_TOKEN`;
/// with no account named anywhere, Azurite's development account and its published key.
pub(super) fn resolve(
    opts: &AzureOptions,
    env: &dyn Fn(&str) -> Option<String>,
    now: OffsetDateTime,
) -> Result<Account> {
    let conn = env("AZURE_STORAGE_CONNECTION_STRING").map(|s| parse_connection_string(&s)).unwrap_or_default();
    let get = |k: &str| conn.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    let dev_storage = get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let conn_account = if dev_storage { Some(DEV_ACCOUNT.to_string()) } else { get("accountname") };
    // Azurite's development account only when no account is configured anywhere.
    let name = opts
        .account
        .clone()
        .or_else(|| conn_account.clone())
        .or_else(|| env("AZURE_STORAGE_ACCOUNT"))
        .unwrap_or_else(|| DEV_ACCOUNT.to_string());
    // The connection string counts only when it is for this account.
    let conn_applies = conn_account.as_deref() == Some(name.as_str());
    let from_conn = |k: &str| if conn_applies { get(k) } else { None };
    let is_dev = name == DEV_ACCOUNT;
    let credential = opts
        .credential
        .clone()
        .or_else(|| {
            if dev_storage && conn_applies {
                Some(Credential::Key(DEV_KEY.into()))
            } else {
                from_conn("accountkey")
                    .map(Credential::Key)
                    .or_else(|| from_conn("sharedaccesssignature").map(Credential::Sas))
            }
        })
        .or_else(|| env("AZURE_STORAGE_KEY").map(Credential::Key))
        .or_else(|| env("AZURE_STORAGE_SAS_TOKEN").map(Credential::Sas))
        .or_else(|| is_dev.then(|| Credential::Key(DEV_KEY.into())))
        .ok_or_else(|| {
            Error::sink(
                "azure",
                format!(
                    "no credentials for storage account '{name}': set AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN, \
                     or AZURE_STORAGE_CONNECTION_STRING (Entra ID sign-in is not supported yet)"
                ),
            )
        })?;
    let endpoint = opts
        .endpoint
        .clone()
        .or_else(|| from_conn("blobendpoint"))
        .or_else(|| (is_dev && (dev_storage || !conn_applies)).then(|| DEV_ENDPOINT.to_string()))
        .unwrap_or_else(|| {
            let proto = from_conn("defaultendpointsprotocol").unwrap_or_else(|| "https".into());
            let suffix = from_conn("endpointsuffix").unwrap_or_else(|| "core.windows.net".into());
            format!("{proto}://{name}.blob.{suffix}")
        });
    let endpoint = endpoint.trim_end_matches('/').to_string();
    let sas = match credential {
        Credential::Sas(s) => s.trim_start_matches('?').to_string(),
        Credential::Key(key) => account_sas(&name, &key, now)?,
    };
    Ok(Account { name, endpoint, sas })
}

/// `YYYY-MM-DDThh:mm:ssZ`, as SAS times are written (`t` is in UTC).
fn sas_time(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The SAS service version the signature follows (its string-to-sign includes the encryption scope).
const SAS_VERSION: &str = "2022-11-02";

/// An account SAS for the blob service, signed with the account key: read, write, delete, list, add
/// and create on the service, containers and objects; valid from 15 minutes ago (clock skew) for
/// 7 days (longer than any run should take).
pub fn account_sas(account: &str, key: &str, now: OffsetDateTime) -> Result<String> {
    let bad_key = || Error::sink("azure", format!("the account key for '{account}' is not valid base64"));
    let raw = base64::engine::general_purpose::STANDARD.decode(key.trim()).map_err(|_| bad_key())?;
    if raw.is_empty() {
        return Err(bad_key());
    }
    let (sp, ss, srt, spr) = ("rwdlac", "b", "sco", "https,http");
    let st = sas_time(now - AzDuration::minutes(15));
    let se = sas_time(now + AzDuration::days(7));
    // Fields in the documented order; the last two are the (empty) encryption scope and a final newline.
    let to_sign = format!("{account}\n{sp}\n{ss}\n{srt}\n{st}\n{se}\n\n{spr}\n{SAS_VERSION}\n\n");
    let sig = azure_core::hmac::hmac_sha256(&to_sign, &azure_core::credentials::Secret::new(key.trim().to_string()))
        .map_err(|_| bad_key())?;
    let mut q = Url::parse("http://sas/").expect("static URL parses");
    q.query_pairs_mut()
        .append_pair("sv", SAS_VERSION)
        .append_pair("ss", ss)
        .append_pair("srt", srt)
        .append_pair("sp", sp)
        .append_pair("st", &st)
        .append_pair("se", &se)
        .append_pair("spr", spr)
        .append_pair("sig", &sig);
    Ok(q.query().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn accounts_resolve_from_options_connection_strings_and_env() {
        let opts = AzureOptions::default();
        // Azurite's shortcut.
        let a = resolve(&opts, &env_of(&[("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")]), now())
            .unwrap();
        assert_eq!((a.name.as_str(), a.endpoint.as_str()), (DEV_ACCOUNT, DEV_ENDPOINT));
        assert!(a.sas.contains("sig="), "{}", a.sas);
        // A full connection string with an explicit endpoint.
        let conn =
            "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=a2V5;BlobEndpoint=http://10.0.0.1:10000/acct/";
        let env = env_of(&[("AZURE_STORAGE_CONNECTION_STRING", conn)]);
        let a = resolve(&opts, &env, now()).unwrap();
        assert_eq!((a.name.as_str(), a.endpoint.as_str()), ("acct", "http://10.0.0.1:10000/acct"));
        // Account and SAS from the environment; the endpoint is the public one.
        let a = resolve(
            &opts,
            &env_of(&[("AZURE_STORAGE_ACCOUNT", "prod"), ("AZURE_STORAGE_SAS_TOKEN", "?sv=2022-11-02&sig=abc")]),
            now(),
        )
        .unwrap();
        assert_eq!(
            a,
            Account {
                name: "prod".into(),
                endpoint: "https://prod.blob.core.windows.net".into(),
                sas: "sv=2022-11-02&sig=abc".into()
            }
        );
        // The workload's account wins; a connection string for another account is not used.
        let opts = AzureOptions { account: Some("other".into()), ..Default::default() };
        let e = resolve(&opts, &env, now()).unwrap_err().to_string();
        assert!(e.contains("no credentials for storage account 'other'"), "{e}");
        // The development account needs nothing.
        let opts = AzureOptions { account: Some(DEV_ACCOUNT.into()), ..Default::default() };
        assert_eq!(resolve(&opts, &env_of(&[]), now()).unwrap().endpoint, DEV_ENDPOINT);
        // Nothing at all: Azurite's development account.
        let a = resolve(&AzureOptions::default(), &env_of(&[]), now()).unwrap();
        assert_eq!((a.name.as_str(), a.endpoint.as_str()), (DEV_ACCOUNT, DEV_ENDPOINT));
        // A connection string alone reaches its account, whatever else is unset.
        let conn =
            "DefaultEndpointsProtocol=https;AccountName=prodacct;AccountKey=a2V5;EndpointSuffix=core.windows.net";
        let a =
            resolve(&AzureOptions::default(), &env_of(&[("AZURE_STORAGE_CONNECTION_STRING", conn)]), now()).unwrap();
        assert_eq!((a.name.as_str(), a.endpoint.as_str()), ("prodacct", "https://prodacct.blob.core.windows.net"));
        let opts = AzureOptions {
            account: Some("x1".into()),
            credential: Some(Credential::Key("not base64!".into())),
            ..Default::default()
        };
        let e = resolve(&opts, &env_of(&[]), now()).unwrap_err().to_string();
        assert!(e.contains("not valid base64"), "{e}");
    }

    #[test]
    fn account_sas_is_signed_over_the_documented_fields() {
        // The signature checked independently: HMAC-SHA256 with the decoded key over the
        // string-to-sign of service version 2020-12-06 and later.
        let sas = account_sas("acct", "a2V5", now()).unwrap();
        let pairs: std::collections::HashMap<String, String> =
            Url::parse(&format!("http://x/?{sas}")).unwrap().query_pairs().into_owned().collect();
        assert_eq!(pairs["st"], "2027-01-15T07:45:00Z");
        assert_eq!(pairs["se"], "2027-01-22T08:00:00Z");
        let to_sign = "acct\nrwdlac\nb\nsco\n2027-01-15T07:45:00Z\n2027-01-22T08:00:00Z\n\nhttps,http\n2022-11-02\n\n";
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"key").unwrap();
        mac.update(to_sign.as_bytes());
        let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(pairs["sig"], want);
    }
}
