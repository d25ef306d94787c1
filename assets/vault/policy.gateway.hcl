# Lets the Istio gateways' Vault agents in {cluster} read their TLS material (tls_crt,
# tls_key, ca_crt) and nothing else: not istiod's CA. Written by istio-vault-wizard.
### one block per gateway
path "{path}" {
  capabilities = ["read"]
}
