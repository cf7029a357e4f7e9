"""Reading runs: the HTML report, `show` and `sql`."""
