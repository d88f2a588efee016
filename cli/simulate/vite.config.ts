// The app as a simulation serves it: the project's Vite config without hot reload. A dev server with HMR reloads
// every open tab when a source file changes, which would restart all the simulated peers mid-run.
import { mergeConfig } from 'vite';
import base from '../../vite.config.ts';

export default mergeConfig(base, { server: { hmr: false, watch: null } });
