# Lets istiod's Vault agent read its CA bundle ({cluster}). Written by istio-vault-wizard.
# KV version 2: reads go to <mount>/data/<path>.
path "{path}" {
  capabilities = ["read"]
}
