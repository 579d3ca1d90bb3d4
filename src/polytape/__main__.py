from polytape.cli import main

main()
