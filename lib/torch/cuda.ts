// CUDA facts. A CPU libtorch (Debian's) always answers false / 0.
import { native as N } from './native.js';

export const isAvailable = (): boolean => N.cudaIsAvailable();
export const deviceCount = (): number => N.cudaDeviceCount();
