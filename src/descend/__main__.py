from descend.cli import main

main()
