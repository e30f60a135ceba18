from spotpatch.cli import main

raise SystemExit(main())
