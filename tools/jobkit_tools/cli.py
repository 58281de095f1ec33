def main() -> None:
    raise SystemExit("jobkit CLI: not built yet")
