//! Write transactions that read first. SQLite starts a plain `BEGIN` as a reader; when such a transaction
//! later writes while another connection has committed since its first read, SQLite answers "database is
//! locked" at once (its busy timeout cannot help: the snapshot is stale). `BEGIN IMMEDIATE` takes the write
//! lock up front, so writers queue behind the busy timeout instead. PostgreSQL ignores the option.

use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

/// Begins a transaction that will write, holding SQLite's write lock from its first statement.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}
