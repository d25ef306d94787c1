# Lets istiod's Vault agent read its CA bundle ({cluster}). Written by istio-vault-wizard.
path "{path}" {
  capabilities = ["read"]
}
