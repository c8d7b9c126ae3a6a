"""The EMI Wallet primitive: customer wallets backed by ledger accounts, with KYC-tier limits
checked atomically with each posting."""

from finfactory.primitives.wallet import events
from finfactory.primitives.wallet.commands import (
    ActivateWallet,
    CashIn,
    CashOut,
    CloseWallet,
    Limits,
    LimitsView,
    MovementView,
    OpenWallet,
    PayMerchant,
    SuspendWallet,
    Transfer,
    UpdateLimits,
    UsageView,
    WalletView,
)
from finfactory.primitives.wallet.errors import (
    DuplicateMovementReference,
    InsufficientFunds,
    InvalidSettlementAccount,
    InvalidTransition,
    KycRequired,
    LimitExceeded,
    NotAMerchantWallet,
    TierNotAllowed,
    TooManyWallets,
    WalletCurrencyMismatch,
    WalletNotActive,
    WalletNotEmpty,
    WalletNotFound,
)
from finfactory.primitives.wallet.model import (
    LimitKind,
    LimitOverride,
    LimitSet,
    Movement,
    MovementKind,
    Usage,
    Wallet,
    WalletKind,
    WalletStatus,
)
from finfactory.primitives.wallet.ports import CustomerTiers, StoreFactory, WalletStore
from finfactory.primitives.wallet.service import SERVICE_ACTOR, WalletService
from finfactory.primitives.wallet.settings import ANY_TIER, WalletSettings

# How documentation (the event catalog) names the primitive.
DISPLAY_NAME = "EMI Wallet"

__all__ = [
    "ANY_TIER",
    "SERVICE_ACTOR",
    "ActivateWallet",
    "CashIn",
    "CashOut",
    "CloseWallet",
    "CustomerTiers",
    "DuplicateMovementReference",
    "InsufficientFunds",
    "InvalidSettlementAccount",
    "InvalidTransition",
    "KycRequired",
    "LimitExceeded",
    "LimitKind",
    "LimitOverride",
    "LimitSet",
    "Limits",
    "LimitsView",
    "Movement",
    "MovementKind",
    "MovementView",
    "NotAMerchantWallet",
    "OpenWallet",
    "PayMerchant",
    "StoreFactory",
    "SuspendWallet",
    "TierNotAllowed",
    "TooManyWallets",
    "Transfer",
    "UpdateLimits",
    "Usage",
    "UsageView",
    "Wallet",
    "WalletCurrencyMismatch",
    "WalletKind",
    "WalletNotActive",
    "WalletNotEmpty",
    "WalletNotFound",
    "WalletService",
    "WalletSettings",
    "WalletStatus",
    "WalletStore",
    "WalletView",
    "events",
]
