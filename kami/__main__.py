from kami.cli.main import main

main()
