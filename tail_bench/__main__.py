from tail_bench.cli import main

main()
