from nodeloom.cli.main import main

raise SystemExit(main())
