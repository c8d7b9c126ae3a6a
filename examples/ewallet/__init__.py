"""The reference e-wallet: Identity & KYC, EMI Wallet, Ledger and QR Ph behind one HTTP API."""
