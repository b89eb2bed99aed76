//! Every rule of the bank account example, checked with given/when/then through the facade.

#[path = "../examples/bank_account/domain.rs"]
mod domain;

use domain::{
    AccountClosed, AccountError, AccountOpened, BankAccount, BankAccountEvent, MoneyDeposited, MoneyDepositedV1,
    MoneyWithdrawn,
};
use es::testing::*;

fn opened(owner: &str, initial_deposit: u64) -> AccountOpened {
    AccountOpened { owner: owner.into(), initial_deposit }
}

fn deposited(amount: u64, reference: &str) -> MoneyDeposited {
    MoneyDeposited { amount, reference: reference.into() }
}

fn withdrawn(amount: u64) -> MoneyWithdrawn {
    MoneyWithdrawn { amount }
}

fn account(owner: &str, open: bool, closed: bool, balance: u64) -> BankAccount {
    BankAccount { owner: owner.into(), open, closed, balance }
}

// --- open ---------------------------------------------------------------------------------

#[test]
fn a_new_account_opens() {
    BankAccount::given_nothing()
        .when(|a| a.open("ann", 100))
        .then(opened("ann", 100))
        .and_state_is(account("ann", true, false, 100));
}

#[test]
fn an_account_may_open_with_nothing_paid_in() {
    BankAccount::given_nothing()
        .when(|a| a.open("ann", 0))
        .then(opened("ann", 0))
        .and_state_is(account("ann", true, false, 0));
}

#[test]
fn an_open_account_cannot_be_opened_again() {
    BankAccount::given(opened("ann", 100)).when(|a| a.open("bob", 5)).then_error(AccountError::AlreadyOpen);
}

#[test]
fn a_closed_account_cannot_be_reopened() {
    BankAccount::given((opened("ann", 0), AccountClosed {}))
        .when(|a| a.open("ann", 10))
        .then_error(AccountError::Closed);
}

// --- deposit ------------------------------------------------------------------------------

#[test]
fn a_deposit_is_paid_in() {
    BankAccount::given(opened("ann", 100))
        .when(|a| a.deposit(50, "salary"))
        .then(deposited(50, "salary"))
        .and_state(|a| {
            assert_eq!(a.balance, 150);
            assert!(a.open);
        })
        .and_state_is(account("ann", true, false, 150));
}

#[test]
fn a_deposit_of_nothing_is_refused() {
    BankAccount::given(opened("ann", 100)).when(|a| a.deposit(0, "nothing")).then_error(AccountError::ZeroAmount);
}

#[test]
fn a_deposit_into_an_account_never_opened_is_refused() {
    BankAccount::given_nothing().when(|a| a.deposit(10, "x")).then_error(AccountError::NotOpen);
}

#[test]
fn a_deposit_into_a_closed_account_is_refused() {
    BankAccount::given((opened("ann", 0), AccountClosed {}))
        .when(|a| a.deposit(10, "late"))
        .then_error(AccountError::Closed);
}

// --- withdraw -----------------------------------------------------------------------------

#[test]
fn a_withdrawal_within_the_balance_is_paid_out() {
    BankAccount::given(opened("ann", 100))
        .when(|a| a.withdraw(30))
        .then(withdrawn(30))
        .and_state(|a| assert_eq!(a.balance, 70));
}

#[test]
fn the_whole_balance_can_be_withdrawn() {
    BankAccount::given(opened("ann", 100))
        .when(|a| a.withdraw(100))
        .then(withdrawn(100))
        .and_state_is(account("ann", true, false, 0));
}

#[test]
fn withdrawing_more_than_the_balance_is_refused_with_both_amounts() {
    BankAccount::given(opened("ann", 100))
        .when(|a| a.withdraw(150))
        .then_error(AccountError::InsufficientFunds { balance: 100, requested: 150 });
}

#[test]
fn withdrawing_one_cent_more_than_the_balance_is_refused() {
    BankAccount::given(opened("ann", 100))
        .when(|a| a.withdraw(101))
        .then_error(AccountError::InsufficientFunds { balance: 100, requested: 101 });
}

#[test]
fn the_insufficient_funds_error_carries_the_balance_after_all_history() {
    BankAccount::given((opened("ann", 100), deposited(50, "salary"), withdrawn(30)))
        .when(|a| a.withdraw(121))
        .then_error_matches(|error| {
            matches!(error, AccountError::InsufficientFunds { balance: 120, requested: 121 })
                && error.to_string() == "insufficient funds: the balance is 120, 121 was requested"
        });
}

#[test]
fn nothing_can_be_withdrawn_from_an_empty_account() {
    BankAccount::given(opened("ann", 0))
        .when(|a| a.withdraw(1))
        .then_error(AccountError::InsufficientFunds { balance: 0, requested: 1 });
}

#[test]
fn a_withdrawal_of_nothing_is_refused_before_the_balance_is_checked() {
    BankAccount::given(opened("ann", 0)).when(|a| a.withdraw(0)).then_error(AccountError::ZeroAmount);
}

#[test]
fn a_withdrawal_from_an_account_never_opened_is_refused() {
    BankAccount::given_nothing().when(|a| a.withdraw(10)).then_error(AccountError::NotOpen);
}

#[test]
fn a_withdrawal_from_a_closed_account_is_refused() {
    BankAccount::given((opened("ann", 100), withdrawn(100), AccountClosed {}))
        .when(|a| a.withdraw(1))
        .then_error(AccountError::Closed);
}

// --- close --------------------------------------------------------------------------------

#[test]
fn closing_pays_out_the_balance_first() {
    BankAccount::given((opened("ann", 100), deposited(20, "gift")))
        .when(BankAccount::close)
        .then((Some(withdrawn(120)), AccountClosed {}))
        .and_state_is(account("ann", false, true, 0));
}

#[test]
fn closing_an_empty_account_pays_nothing_out() {
    let then = BankAccount::given((opened("ann", 100), withdrawn(100)))
        .when(BankAccount::close)
        .then((None::<MoneyWithdrawn>, AccountClosed {}))
        .and_state_is(account("ann", false, true, 0));
    assert_eq!(then.events(), [BankAccountEvent::AccountClosed(AccountClosed {})]);
}

#[test]
fn closing_produces_the_payout_before_the_closing() {
    let then = BankAccount::given(opened("ann", 7))
        .when(BankAccount::close)
        .then([BankAccountEvent::from(withdrawn(7)), BankAccountEvent::from(AccountClosed {})]);
    assert_eq!(then.events().len(), 2);
    assert_eq!(then.events()[0].event_type(), "MoneyWithdrawn");
    assert_eq!(then.events()[1].event_type(), "AccountClosed");
    assert_eq!(*then.state(), account("ann", false, true, 0));
}

#[test]
fn a_closed_account_cannot_be_closed_again() {
    BankAccount::given((opened("ann", 0), AccountClosed {})).when(BankAccount::close).then_error(AccountError::Closed);
}

#[test]
fn an_account_never_opened_cannot_be_closed() {
    BankAccount::given_nothing().when(BankAccount::close).then_error(AccountError::NotOpen);
}

// --- the ways to give history -------------------------------------------------------------

#[test]
fn history_as_a_tuple_is_applied_in_order() {
    BankAccount::given((opened("ann", 10), deposited(5, "a"), withdrawn(3), deposited(1, "b")))
        .when(|a| a.withdraw(14))
        .then_error(AccountError::InsufficientFunds { balance: 13, requested: 14 });
}

#[test]
fn history_as_a_vec_of_the_event_enum_is_applied_in_order() {
    let history: Vec<BankAccountEvent> =
        vec![opened("ann", 10).into(), deposited(5, "a").into(), withdrawn(15).into(), AccountClosed {}.into()];
    let given = BankAccount::given(history.clone());
    assert_eq!(given.history(), history.as_slice());
    assert_eq!(*given.state(), account("ann", false, true, 0));
    given.when(|a| a.deposit(1, "late")).then_error(AccountError::Closed);
}

#[test]
fn history_as_a_vec_of_one_event_type_and_more_with_and() {
    BankAccount::given(opened("ann", 1))
        .and(vec![deposited(2, "a"), deposited(3, "b")])
        .and((withdrawn(1), None::<AccountClosed>))
        .when(|a| a.withdraw(6))
        .then_error(AccountError::InsufficientFunds { balance: 5, requested: 6 });
}

#[test]
fn the_state_after_the_command_includes_the_given_history() {
    let then = BankAccount::given((opened("ann", 100), deposited(50, "salary")))
        .when(|a| a.withdraw(120))
        .then(withdrawn(120));
    assert_eq!(then.events(), [BankAccountEvent::MoneyWithdrawn(withdrawn(120))]);
    assert_eq!(then.state().balance, 30);
}

#[test]
fn raw_history_with_a_version_1_deposit_goes_through_the_upcaster() {
    let given = BankAccount::given_raw([
        RawEvent::new("AccountOpened", 1, r#"{"owner":"bob","initial_deposit":10}"#),
        RawEvent::new("MoneyDeposited", 1, r#"{"amount":25}"#),
    ]);
    assert_eq!(given.history(), [BankAccountEvent::from(opened("bob", 10)), BankAccountEvent::from(deposited(25, ""))]);
    given.when(|a| a.withdraw(35)).then(withdrawn(35)).and_state_is(account("bob", true, false, 0));
}

#[test]
fn raw_history_of_both_versions_mixes_with_typed_history() {
    let v1 = MoneyDepositedV1 { amount: 7 };
    BankAccount::given(opened("bob", 0))
        .and_raw([
            RawEvent::json("MoneyDeposited", 1, &serde_json::to_value(&v1).unwrap()),
            RawEvent::json("MoneyDeposited", 2, &serde_json::json!({ "amount": 3, "reference": "cash" })),
        ])
        .and(withdrawn(1))
        .when(|a| a.withdraw(10))
        .then_error(AccountError::InsufficientFunds { balance: 9, requested: 10 });
}

#[test]
fn raw_history_decodes_like_the_event_set_does() {
    let decoded = BankAccountEvent::decode("MoneyDeposited", 1, r#"{"amount":25}"#).unwrap();
    assert_eq!(decoded, BankAccountEvent::MoneyDeposited(deposited(25, "")));
    assert_eq!(decoded.schema_version(), 2);
    assert_eq!(decoded.encode().unwrap(), r#"{"amount":25,"reference":""}"#);
}
