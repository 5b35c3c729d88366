from server.admin.console import main

raise SystemExit(main())
