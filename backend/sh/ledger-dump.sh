# ledger-dump.sh (isoadmin-ledger): the whole ledger's dump, when the ledger is not on an image host (an image
# host's listing carries it). Runs after lib-ledger-dump.sh (prepended by backend/ledger.py).
#
# Input: $1 the ledger folder. Output: ledger_dump's lines (see lib-ledger-dump.sh); exit 0.

ledger_dump "$1"
