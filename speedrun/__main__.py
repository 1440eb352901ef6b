from speedrun.cli import main
import sys
sys.exit(main())
